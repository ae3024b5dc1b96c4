"""Process start to the first token, PoE against plain, as a user runs it.

    python scripts/bench_startup.py [--model default] [--rounds 7]

Alternates `ijt-local generate --prompt ... --max-tokens 1` with and without `--poe` (fresh processes, so
imports, model load and, for PoE, the rule vocabulary are all in the time) and prints one JSON line with
the median wall time of each and their ratio. The first PoE run of a model file builds the rule vocabulary
cache (ijt_local/rules/vocab_cache.py); it is run once before the timed rounds, and `--cold` removes that cache
before every PoE run to time the build instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from bench_harness import median, rounds

from ijt_local.models import cache_dir


def run(model: str, poe: bool, env: dict) -> float:
    command = [
        sys.executable,
        "-m",
        "ijt_local",
        "generate",
        "--model",
        model,
        "--prompt",
        "Name a colour.",
        "--max-tokens",
        "1",
    ] + (["--poe"] if poe else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cold", action="store_true", help="time PoE with an empty rule vocabulary cache")
    args = parser.parse_args()

    env = dict(os.environ)

    def run_poe() -> float:
        if args.cold:
            shutil.rmtree(cache_dir() / "vocab", ignore_errors=True)
        return run(args.model, True, env)

    run(args.model, True, env)  # warm the page cache, and the vocabulary cache unless --cold
    times = rounds(args.rounds, {"plain": lambda: run(args.model, False, env), "poe": run_poe}, alternate=False)
    plain, poe = median(times["plain"]), median(times["poe"])
    print(
        json.dumps(
            {
                "model": args.model,
                "rounds": args.rounds,
                "vocab_cache": "cold" if args.cold else "warm",
                "plain_s": round(plain, 3),
                "poe_s": round(poe, 3),
                "ratio": round(poe / plain, 3),
                "plain_all": [round(t, 3) for t in times["plain"]],
                "poe_all": [round(t, 3) for t in times["poe"]],
                "load": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
