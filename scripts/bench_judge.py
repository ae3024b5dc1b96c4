"""Judging several models against one reference: one fresh prefill per judgement vs shared prefixes.

    python scripts/bench_judge.py --generations runs/laptop/compare/generations --reference instruct-s0 \
        --models base,response-s0,poetry-s0,rules [--judge judge] [--instructions 8]

Both ways judge the same pairs (both orders) with one loaded judge, side by side in one run:
  fresh   model by model, every judge prompt prefilled from scratch (how `compare --judge` judged before)
  shared  instruction by instruction, each instruction's reference-first prompts together, then its
          output-first ones, each prompt decoding only what it does not share with the previous one
          (`ijt_local.eval.judge.pairwise_judge`)
It prints seconds per judgement for each, their ratio, judge prompt tokens per judgement, and the largest
difference between the two ways' order-averaged preferences (prefix reuse changes the last float digits).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from ijt_local.eval.judge import judge_instructions, pairwise_judge
from ijt_local.eval.local_judge import LocalJudge
from ijt_local.jsonl import read_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", required=True, help="a compare run's generations/ folder")
    parser.add_argument("--reference", required=True)
    parser.add_argument("--models", required=True, help="comma-separated names in --generations")
    parser.add_argument("--judge", default="judge")
    parser.add_argument("--form", default="alpaca_eval_2", help="judge prompt form")
    parser.add_argument("--instructions", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    folder = Path(args.generations)
    names = args.models.split(",")

    def table(name: str) -> dict[str, str]:
        rows = read_jsonl(folder / f"{name}.jsonl")
        return {row["instruction"]: row["output"] for row in rows}

    reference = table(args.reference)
    instructions = list(reference)[: args.instructions]
    reference = {q: reference[q] for q in instructions}
    outputs = {name: {q: a for q, a in table(name).items() if q in reference} for name in names}
    judge = LocalJudge(args.judge, form=args.form, threads=args.threads)
    judge.judge(instructions[0], "warm", "up")  # load the model outside the timed region

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        judge.reuse_prefix = False
        started = time.perf_counter()
        fresh = {
            name: judge_instructions(outputs[name], reference, judge, Path(scratch) / f"fresh-{name}.jsonl")
            for name in names
        }
        results["fresh"] = time.perf_counter() - started
        judge.reuse_prefix = True
        generations = {
            name: [{"instruction": q, "output": a} for q, a in t.items()]
            for name, t in {**outputs, args.reference: reference}.items()
        }
        started = time.perf_counter()
        pairwise_judge(judge, args.reference, Path(scratch) / "shared")(generations)  # closes the judge
        results["shared"] = time.perf_counter() - started
        shared = {
            name: read_jsonl(Path(scratch) / "shared" / "judgements" / f"{name}-vs-{args.reference}.preferences.jsonl")
            for name in names
        }
        cache_rows = [row for name in names for row in read_jsonl(Path(scratch) / f"fresh-{name}.jsonl")]

    judgements = len(cache_rows)
    difference = max(
        abs(a["preference"] - b["preference"])
        for name in names
        for a, b in zip(fresh[name], shared[name])
        if a["preference"] is not None
    )
    print(
        json.dumps(
            {
                "judge": judge.model,
                "models": names,
                "instructions": len(instructions),
                "judgements": judgements,
                "prompt_tokens_per_judgement": round(sum(r["prompt_tokens"] for r in cache_rows) / judgements),
                "fresh_s_per_judgement": round(results["fresh"] / judgements, 2),
                "shared_s_per_judgement": round(results["shared"] / judgements, 2),
                "speedup": round(results["fresh"] / results["shared"], 2),
                "max_preference_difference": round(difference, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
