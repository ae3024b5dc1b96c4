"""One prompt, one reply, measured: batched replies across widths and orders, the one-row single stream
against them, and what `--batch-invariant` costs a lone reply.

    python scripts/bench_invariance.py [--model default] [--max-tokens 128] [--widths 2,16] [--exact-prompts 6]

On the val instructions (greedy, the rule expert on):
  batched   generate_all at each width, and at the last width in reversed order: how many replies equal
            the first width's (token for token)
  single    the one-row single-stream path (`--parallel 1`, chat's default): how many equal the batched
            replies, and where the others first differ (median character)
  speed     single-stream tok/s of the one-row path and of the exact path (`--batch-invariant`) on the
            first --exact-prompts instructions, alternating, medians
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from bench_harness import VAL, user_conversations

from ijt_local.rules.expert import load_rules
from ijt_local.runtime.batch import generate_all
from ijt_local.runtime.session import Session


def replies(session, conversations, width, **options):
    found = dict(generate_all(session, conversations, width, **options))
    return [found[i] for i in range(len(conversations))]


def first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompts", default=str(VAL))
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--widths", default="2,16")
    parser.add_argument("--exact-prompts", type=int, default=6)
    args = parser.parse_args()

    conversations = user_conversations(args.prompts)
    session = Session(args.model, n_ctx=1024)
    options = dict(max_tokens=args.max_tokens, rules=load_rules())
    widths = [int(w) for w in args.widths.split(",")]

    reference = replies(session, conversations, widths[0], **options)
    same = {}
    for width in widths[1:]:
        same[str(width)] = sum(
            a.tokens == b.tokens for a, b in zip(reference, replies(session, conversations, width, **options))
        )
    reordered = replies(session, conversations[::-1], widths[-1], **options)[::-1]
    same[f"{widths[-1]}_reversed"] = sum(a.tokens == b.tokens for a, b in zip(reference, reordered))

    single = replies(session, conversations, 1, **options)
    differ = [first_difference(a.text, b.text) for a, b in zip(reference, single) if a.tokens != b.tokens]

    speed = {"one_row": [], "exact": []}
    for conversation in conversations[: args.exact_prompts]:
        for name, exact in (("one_row", False), ("exact", True)):
            started = time.perf_counter()
            ((_, generation),) = generate_all(session, [conversation], 1, exact=exact, ignore_eos=True, **options)
            speed[name].append(generation.n_tokens / (time.perf_counter() - started))
    one_row, exact = statistics.median(speed["one_row"]), statistics.median(speed["exact"])
    print(
        json.dumps(
            {
                "model": args.model,
                "prompts": len(conversations),
                "max_tokens": args.max_tokens,
                "batched_same_as_width": {"width": widths[0], **same},
                "single_one_row_same": len(conversations) - len(differ),
                "single_first_difference_median_char": statistics.median(differ) if differ else None,
                "single_tok_s": round(one_row, 1),
                "exact_single_tok_s": round(exact, 1),
                "exact_vs_one_row": round(exact / one_row, 3),
                "load": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
