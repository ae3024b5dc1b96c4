"""`ijt-local quantize IN.gguf OUT.gguf Q4_K_M`: llama.cpp's own quantizer, through llama-cpp-python
(no separate llama.cpp build). The output is written beside OUT and renamed when complete."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ijt_local.errors import UserError

from .gguf_output import atomic_output, check_writable

# the names llama.cpp's quantize tool accepts -> llama_ftype constant names
QUANT_TYPES = {
    "Q4_0": "Q4_0",
    "Q4_1": "Q4_1",
    "Q5_0": "Q5_0",
    "Q5_1": "Q5_1",
    "Q8_0": "Q8_0",
    "Q2_K": "Q2_K",
    "Q3_K_S": "Q3_K_S",
    "Q3_K_M": "Q3_K_M",
    "Q3_K_L": "Q3_K_L",
    "Q4_K_S": "Q4_K_S",
    "Q4_K_M": "Q4_K_M",
    "Q5_K_S": "Q5_K_S",
    "Q5_K_M": "Q5_K_M",
    "Q6_K": "Q6_K",
    "IQ4_NL": "IQ4_NL",
    "IQ4_XS": "IQ4_XS",
    "F16": "F16",
    "BF16": "BF16",
}


def check_type(name: str) -> str:
    key = name.upper()
    if key not in QUANT_TYPES:
        raise UserError(f"quantization type {name}: choose one of {', '.join(QUANT_TYPES)}")
    return key


def _ftype(name: str) -> int:
    import llama_cpp

    return getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{QUANT_TYPES[check_type(name)]}")


def quantize_gguf(source: Path, out: Path, kind: str, threads: int | None = None) -> dict:
    """Quantize `source` to `out` with llama.cpp; one clear error if llama.cpp refuses."""
    import llama_cpp

    from ijt_local.models import check_gguf
    from ijt_local.runtime.llama import capture_llama_logs

    source, out = Path(source), Path(out)
    ftype = _ftype(kind)
    check_gguf(source)
    if source.resolve() == out.resolve():
        raise UserError(f"{out}: the output must differ from the input")
    check_writable(out)
    capture_llama_logs()  # llama.cpp's per-tensor report goes to the log buffer, not the terminal
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    # an already-quantized input (say the embedded Q4_K_M) is re-quantized rather than refused
    params.allow_requantize = True
    started = time.perf_counter()
    with atomic_output(out) as tmp:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
        if status != 0 or not tmp.exists():
            raise UserError(f"{source}: llama.cpp could not quantize this file to {kind} (status {status})")
    return {
        "quantized": str(out),
        "type": check_type(kind),
        "quantized_bytes": out.stat().st_size,
        "quantize_seconds": round(time.perf_counter() - started, 2),
    }
