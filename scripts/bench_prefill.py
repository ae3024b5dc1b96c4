"""Prompt prefill speed of one GGUF under llama.cpp settings that could change it, side by side in one run.

    python scripts/bench_prefill.py [--model judge] [--tokens 1000] [--repeats 3] [--threads 2]

A judge's cost is its prefill (a judgement decodes ~1,000 prompt tokens and reads one logits row), so this
asks whether llama.cpp's batch sizes or flash attention move it: for each setting, one fresh context, the
same prompt decoded from an empty cache `--repeats` times, median tokens/s. The prompt is a real text
(the alpaca_eval instructions, joined) cut to `--tokens` tokens. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

SETTINGS = {
    "n_batch 512 (ijt-local's)": {"n_batch": 512, "n_ubatch": 512},
    "n_batch 256": {"n_batch": 256, "n_ubatch": 256},
    "n_batch 1024": {"n_batch": 1024, "n_ubatch": 1024},
    "n_batch 512 + flash attention": {"n_batch": 512, "n_ubatch": 512, "flash_attn": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="judge")
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import llama_cpp

    from ijt_local.data.home import shared_data_path
    from ijt_local.jsonl import read_jsonl
    from ijt_local.models import resolve_model

    path = str(resolve_model(args.model).path)
    instructions = shared_data_path("alpaca_eval/alpaca_eval.jsonl")
    if not instructions.is_file():
        raise SystemExit(f"bench_prefill: {instructions} not found (set IJT_LOCAL_DATA to the shared data folder)")
    text = "\n\n".join(row["instruction"] for row in read_jsonl(instructions))
    speeds = {}
    for name, settings in SETTINGS.items():
        llm = llama_cpp.Llama(
            model_path=path,
            n_ctx=args.tokens + 64,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            verbose=False,
            **settings,
        )
        tokens = llm.tokenize(text.encode())[: args.tokens]
        seconds = []
        for _ in range(args.repeats):
            llm.reset()
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
            started = time.perf_counter()
            llm.eval(tokens)
            seconds.append(time.perf_counter() - started)
        speeds[name] = round(len(tokens) / statistics.median(seconds), 1)
        print(f"{name}: {speeds[name]} tokens/s", file=sys.stderr)
        llm.close()
    reference = speeds["n_batch 512 (ijt-local's)"]
    print(
        json.dumps(
            {
                "model": args.model,
                "tokens": args.tokens,
                "threads": args.threads,
                "repeats": args.repeats,
                "tokens_per_second": speeds,
                "ratio_to_ijt_local": {name: round(v / reference, 3) for name, v in speeds.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
