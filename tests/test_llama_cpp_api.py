"""What ijt_local uses of llama-cpp-python: what it reads of a `Llama` (a GGUF's metadata), the low-level
bindings and the fields of the C structs it fills in. All of it is in ijt_local/runtime/llama.py (convert/
uses llama.cpp as a tool of its own), and no source reaches a private attribute (`_ctx`, `_internals`, ...).

pyproject.toml pins the release these were tested with. Before raising the pin, install the new release
and run this file: a part that is gone fails here in one line naming it, not in every verb at once. (A
ctypes struct takes an assignment to a field it no longer has without complaint, so the fields matter.)
"""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("ijt_local", "train", "convert") for p in (ROOT / folder).rglob("*.py"))

# the parts of a loaded Llama the runtime reads: dotted path from the instance -> what we do with it
LLAMA_PARTS = {
    "metadata": "a GGUF's metadata (`ijt-local models`)",
    "n_vocab": "its vocabulary's size",
}
STRUCT_FIELDS = {
    "llama_model_params": ("n_gpu_layers", "use_extra_bufts"),
    "llama_batch": ("n_tokens", "token", "pos", "n_seq_id", "seq_id", "logits"),
    "llama_context_params": (
        "n_ctx",
        "n_batch",
        "n_ubatch",
        "n_seq_max",
        "kv_unified",
        "n_threads",
        "n_threads_batch",
        "flash_attn_type",
    ),
    "llama_model_quantize_params": ("ftype", "nthread", "allow_requantize"),
}


def source_text() -> str:
    return "\n".join(path.read_text() for path in SOURCES)


def lookup(root, dotted: str):
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def missing_parts(llama, module) -> list[str]:
    """Every part above, and every `llama_cpp.NAME` the sources use, that `module` (llama_cpp) or the
    loaded `llama` lacks."""
    missing = []
    for dotted in LLAMA_PARTS:
        try:
            lookup(llama, dotted)
        except AttributeError:
            missing.append(f"Llama.{dotted}")
    for struct, fields in STRUCT_FIELDS.items():
        present = {name for name, *_ in getattr(getattr(module, struct, None), "_fields_", ())}
        missing += [f"llama_cpp.{struct}.{field}" for field in fields if field not in present]
    for name in sorted(set(re.findall(r"\bllama_cpp\.([A-Za-z_]\w*)", source_text()))):
        if hasattr(module, name):
            continue
        try:
            importlib.import_module(f"{module.__name__}.{name}")  # a submodule, e.g. llama_cpp.server
        except ImportError:
            missing.append(f"llama_cpp.{name}")
    return missing


@pytest.fixture(scope="module")
def llama():
    import llama_cpp

    from ijt_local.models import resolve_model

    model = llama_cpp.Llama(model_path=str(resolve_model("smollm2-135m-instruct").path), n_ctx=64, verbose=False)
    yield model
    model.close()


@pytest.mark.slow
def test_every_private_part_the_runtime_uses_is_there(llama):
    import llama_cpp

    missing = missing_parts(llama, llama_cpp)
    if missing:
        pytest.fail(
            f"llama-cpp-python {llama_cpp.__version__} lacks what ijt_local uses: {', '.join(missing)}", pytrace=False
        )


def test_no_source_reaches_a_private_part_of_llama_cpp():
    text = source_text()
    private = set(re.findall(r"\w*llama\.(_[a-z]\w*)", text)) | set(re.findall(r"\b_internals\b", text))
    assert not private, f"private llama-cpp-python parts used: {', '.join(sorted(private))}"


def test_only_the_llama_layer_imports_llama_cpp():
    importing = {
        str(path.relative_to(ROOT))
        for path in SOURCES
        if re.search(r"^\s*(import llama_cpp|from llama_cpp\b)", path.read_text(), re.M)
    }
    # convert/ uses llama.cpp as a tool of its own: its quantizer, and plain `Llama` as parity's reference
    assert importing == {"ijt_local/runtime/llama.py", "convert/quantize.py", "convert/parity.py"}


def test_a_missing_part_is_named():
    import llama_cpp

    stub = types.SimpleNamespace(metadata={})  # no n_vocab
    assert missing_parts(stub, llama_cpp) == ["Llama.n_vocab"]
