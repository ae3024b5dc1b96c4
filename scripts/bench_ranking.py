"""Response ranking's cost with N random others (paper §4.2): an instruction's N + 1 responses scored after one
decode of its prompt (`Session.score_responses`, what `eval ranking` does) against each response scored with
the prompt decoded again (`score_response` per response, the cost before). Each mode runs in its own
process, alternating, for --rounds rounds; the scores of the two modes are checked to be identical.

    python scripts/bench_ranking.py --instructions 12 --others 5 --rounds 3

Prints one JSON line: seconds per mode (median over rounds), the speed-up, and the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from bench_harness import child_json, median, rounds

MODES = ("shared", "separate")


def worker(mode: str, model: str, instructions: int, others: int, max_tokens: int, threads: int) -> dict:
    from ijt_local.data.home import shared_data_file
    from ijt_local.eval.prompt_sets import load_prompts
    from ijt_local.eval.ranking import cut_to_tokens, pick_others
    from ijt_local.runtime.session import Session

    lima = shared_data_file("lima/lima_data.jsonl")
    if lima is None:
        sys.exit("LIMA is not in the data home (set IJT_LOCAL_DATA)")
    prompts = [p for p in load_prompts(lima) if (p.reference or "").strip()][-instructions:]
    drawn = pick_others(len(prompts), 0, others)
    session = Session(model, n_ctx=4096, threads=threads)
    texts = [
        [cut_to_tokens(session, t, max_tokens) for t in [p.reference, *(prompts[j].reference for j in drawn[i])]]
        for i, p in enumerate(prompts)
    ]
    started = time.perf_counter()
    scores = []
    for prompt, responses in zip(prompts, texts):
        if mode == "shared":
            scored = session.score_responses(prompt.messages, responses)
        else:
            scored = [session.score_response(prompt.messages, response) for response in responses]
        scores.append([s.logprob_sum for s in scored])
    seconds = time.perf_counter() - started
    prompt_tokens = sum(len(session.prompt_tokens(p.messages)) for p in prompts)
    session.close()
    return {"seconds": seconds, "scores": scores, "prompt_tokens": prompt_tokens}


def cpu_flags() -> list[str]:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--instructions", type=int, default=12, help="the last N LIMA conversations")
    parser.add_argument("--others", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=384, help="responses cut to this many tokens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker, args.model, args.instructions, args.others, args.max_tokens, args.threads)
        print(json.dumps(result))
        return

    def run(mode: str) -> dict:
        command = [__file__, "--worker", mode, "--model", args.model]
        command += ["--instructions", str(args.instructions), "--others", str(args.others)]
        command += ["--max-tokens", str(args.max_tokens), "--threads", str(args.threads)]
        return child_json(command, f"the {mode} worker")

    outs = rounds(args.rounds, {mode: lambda mode=mode: run(mode) for mode in MODES}, alternate=False)
    seconds = {mode: median([out["seconds"] for out in outs[mode]]) for mode in MODES}
    scores = {mode: outs[mode][-1]["scores"] for mode in MODES}
    prompt_tokens = outs[MODES[-1]][-1]["prompt_tokens"]
    print(
        json.dumps(
            {
                "model": args.model,
                "instructions": args.instructions,
                "others": args.others,
                "prompt_tokens": prompt_tokens,
                "rounds": args.rounds,
                "seconds_median": {mode: round(value, 2) for mode, value in seconds.items()},
                "speedup_shared_vs_separate": round(seconds["separate"] / seconds["shared"], 3),
                "identical_scores": scores["shared"] == scores["separate"],
                "cpu": platform.processor() or platform.machine(),
                "cpu_flags": cpu_flags(),
            }
        )
    )


if __name__ == "__main__":
    main()
