"""Shared pieces of every GGUF this package writes: atomic output, tensor encodings, the default template."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ijt_local.errors import UserError
from ijt_local.prompts import ASSISTANT_TAG, USER_TAG

OUTTYPES = ("f32", "f16", "bf16", "q8_0")


def tulu_chat_template_jinja() -> str:
    """ijt_local.prompts.TULU as the Jinja template llama.cpp and transformers read (system -> user turn)."""
    return (
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}"
        f"{{{{ '{ASSISTANT_TAG}\\n' + message['content'] + eos_token + '\\n' }}}}"
        "{% else %}"
        f"{{{{ '{USER_TAG}\\n' + message['content'] + '\\n' }}}}"
        "{% endif %}{% endfor %}"
        f"{{% if add_generation_prompt %}}{{{{ '{ASSISTANT_TAG}\\n' }}}}{{% endif %}}"
    )


def check_writable(out: Path) -> None:
    """Refuse an output path before any work is done: an existing directory, a missing or read-only parent."""
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file name for the output")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{out}: cannot write to {parent} (permission denied)")
    if out.exists() and not os.access(out, os.W_OK):
        raise UserError(f"{out}: exists and is not writable")


@contextlib.contextmanager
def atomic_output(out: Path):
    """Yield a temporary path beside `out`; rename it to `out` only if the block finishes."""
    out = Path(out)
    check_writable(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"{out}: write failed ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def encode_tensor(data, outtype: str):
    """float32 numpy array -> (array to write, GGML type). Norms and other 1-D tensors stay float32, as
    llama.cpp expects; q8_0 falls back to f16 for rows not a multiple of its 32-value block."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    if outtype == "f32" or data.ndim == 1:
        return np.ascontiguousarray(data, dtype=np.float32), Q.F32
    if outtype == "f16":
        return data.astype(np.float16), Q.F16
    if outtype == "bf16":
        return quants.quantize(data, Q.BF16), Q.BF16
    if outtype == "q8_0":
        if data.shape[-1] % 32 == 0:
            return quants.quantize(data, Q.Q8_0), Q.Q8_0
        return data.astype(np.float16), Q.F16
    raise UserError(f"--outtype {outtype}: choose one of {', '.join(OUTTYPES)}")


def encoded_nbytes(shape: tuple[int, ...], outtype: str) -> tuple[int, object]:
    """Bytes and GGML type `encode_tensor` will produce for a tensor of `shape`, without the data."""
    from math import prod

    from gguf import GGML_QUANT_SIZES
    from gguf import GGMLQuantizationType as Q

    count = prod(shape)
    if outtype == "f32" or len(shape) == 1:
        return count * 4, Q.F32
    if outtype == "q8_0" and shape[-1] % 32 == 0:
        block, size = GGML_QUANT_SIZES[Q.Q8_0]
        return count // block * size, Q.Q8_0
    return count * 2, (Q.BF16 if outtype == "bf16" else Q.F16)


FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}  # llama_ftype values
