"""ijt-local: implicit instruction tuning on a laptop.

The Python API (ijt_local/api.py, docs/python-api.md):

    from ijt_local import load, generate, batch_generate
    model = load("default+poe")
    print(generate(model, "Name three rivers in Europe.", max_tokens=64))
"""

__version__ = "0.1.0"

API = ("load", "with_rules", "generate", "batch_generate", "score")
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    # loaded on first use, so that `ijt-local --help` and `import ijt_local.cli` stay fast
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ijt_local' has no attribute {name!r}")
