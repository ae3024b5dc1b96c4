"""Time and peak memory of converting gemma-3-270m (HF folder -> GGUF), printed as one JSON line.

    python scripts/bench_convert.py [--outtype f16] [--hf-dir DIR]

The HF folder defaults to the embedded GGUF dequantized by ijt_local.train.base (built on first use,
~80 s, not timed). The conversion runs in a child process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from bench_harness import child_json

CHILD = """
import json, sys
from ijt_local.convert.hf_to_gguf import write_gguf
print(json.dumps(write_gguf(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outtype", default="f16", choices=["f32", "f16", "bf16", "q8_0"])
    parser.add_argument("--hf-dir", default=None)
    args = parser.parse_args()
    if args.hf_dir:
        folder = Path(args.hf_dir)
    else:
        from ijt_local.train.base import base_folder

        folder, _ = base_folder("default")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"model-{args.outtype}.gguf"
        started = time.perf_counter()
        summary = child_json(["-c", CHILD, str(folder), str(out), args.outtype], "the conversion")
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
        size = out.stat().st_size
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    print(
        json.dumps(
            {
                "bench": "convert",
                "model": summary.get("architecture"),
                "outtype": args.outtype,
                "source_mb": round(weights / 2**20, 1),
                "gguf_mb": round(size / 2**20, 1),
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak / 2**20, 1),
                "peak_rss_over_gguf": round(peak / size, 3),
                "cores": os.cpu_count(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
