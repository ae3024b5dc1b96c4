"""What ijt_local uses of llama-cpp-python beyond its documented high-level API: private attributes of
`Llama`, `llama_cpp._internals`, the low-level bindings and the fields of the C structs it fills in.

pyproject.toml pins the release these were tested with. Before raising the pin, install the new release
and run this file: a part that is gone fails here in one line naming it, not in every verb at once. (A
ctypes struct takes an assignment to a field it no longer has without complaint, so the fields matter.)
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("ijt_local", "train", "convert") for p in (ROOT / folder).rglob("*.py"))

# private parts of a loaded Llama: dotted path from the instance -> what we do with it
PRIVATE_LLAMA = {
    "_ctx.ctx": "the session's llama_context pointer",
    "_model.model": "llama_model pointer, for LoRA adapters",
    "_model.vocab": "llama_vocab pointer, for token pieces and EOG",
    "_batch.batch": "the llama_batch the session decodes",
    "_batch.set_batch": "fills that batch",
    "_stack.callback": "frees LoRA adapters with the model",
}
# private callables: dotted path in llama_cpp -> the keyword parameters we pass
PRIVATE_CALLS = {
    "_internals.LlamaContext": ("model", "params", "verbose"),  # the batched engine's second context
    "_internals.LlamaBatch.set_batch": ("batch", "n_past", "logits_all"),
}
STRUCT_FIELDS = {
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
    for dotted in PRIVATE_LLAMA:
        try:
            lookup(llama, dotted)
        except AttributeError:
            missing.append(f"Llama.{dotted}")
    for dotted, keywords in PRIVATE_CALLS.items():
        try:
            parameters = inspect.signature(lookup(module, dotted)).parameters
        except AttributeError:
            missing.append(f"llama_cpp.{dotted}")
            continue
        missing += [f"llama_cpp.{dotted}({keyword}=)" for keyword in keywords if keyword not in parameters]
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


def test_every_private_part_the_sources_use_is_checked_here():
    text = source_text()
    used = {f"Llama.{name}" for name in re.findall(r"\w*llama\.(_[a-z]\w*)", text)}
    used |= {f"_internals.{name}" for name in re.findall(r"\b_internals\.(\w+)", text)}
    checked = {f"Llama.{dotted.split('.')[0]}" for dotted in PRIVATE_LLAMA}
    checked |= {".".join(dotted.split(".")[:2]) for dotted in PRIVATE_CALLS}
    assert used <= checked, f"add to this file's lists: {', '.join(sorted(used - checked))}"


def test_a_missing_part_is_named():
    import llama_cpp

    stub = types.SimpleNamespace(
        _ctx=types.SimpleNamespace(ctx=1),
        _model=types.SimpleNamespace(model=1, vocab=1),
        _batch=types.SimpleNamespace(batch=1, set_batch=print),
    )  # no _stack
    assert missing_parts(stub, llama_cpp) == ["Llama._stack.callback"]
