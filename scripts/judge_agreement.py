"""How often an in-process judge agrees with GPT-4, against "longer output wins" and chance on the same pairs.

    python scripts/judge_agreement.py --judge judge --form direct --pairs 200 [--max-seconds 420] [--speed]

Pairs come from ../shared/data/alpaca_eval/judge_dev/*.jsonl (GPT-4's AlpacaEval 1 preferences between
text-davinci-003 and another model; preference 0 or missing = no decision, skipped): pooled over the
files, shuffled with --seed, the first --pairs taken, so a larger --pairs extends the same sample. The
judge sees every pair in both orders and its order-averaged preference decides (exactly 0.5 counts as
half agreement, as does a pair whose judgements were all invalid). Judgements go to a cache, so a run cut
short by --max-seconds (chunks under the shared CPU lock) resumes where it stopped.

Reported (one JSON line at the end): agreement with GPT-4 and its standard error; the same for "the longer
output (in characters) wins" and the paired difference judge - length with its standard error; chance
(0.5) and the majority baseline (always the model GPT-4 prefers more often); agreement of each order
alone (position bias); how often the judge picks the longer output; seconds per judgement (one order,
one prefill) and per pair. --speed also times one judgement of a pair of two 384-token replies.

With --reference-answers the LLM judge is reference-guided (MT-bench's reference prompt by default).

    python scripts/judge_agreement.py --reference-judges [--llm-cache docs/judge-agreement-reference-cache.jsonl]

validates the reference-guided judges of ijt_local/eval/reference_judges.py on ALL decided dev pairs and
prints one JSON line per judge: "the longer output wins"; chrF and ROUGE-L to the reference answer; their
calibrated combination with length; and, on the pairs whose reference-guided LLM judgements are in
--llm-cache (judged in both orders by the command above), the LLM judge alone and the combination of
chrF, length and the LLM judge. A calibrated judge is fitted on one dev set and tested on the other, then
the other way round: its agreement is out of sample. Each line also gives the weights fitted on all pairs
(the ones REFERENCE_JUDGES carries), the paired difference against length with its standard error, and
the same per dev set.

The measurement itself is ijt_local/eval/judge_agreement.py; this script parses the options and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ijt_local.errors import UserError
from ijt_local.eval.judge_agreement import (
    DEFAULT_DATA,
    DEFAULT_REFERENCES,
    measure_agreement,
    validate_reference_judges,
)
from ijt_local.eval.judge_prompts import DEFAULT_FORM, PROMPT_FORMS, REFERENCE_FORM
from ijt_local.eval.local_judge import DEFAULT_MAX_OUTPUT_TOKENS

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judge", default="judge", help="judge model spec (default: judge)")
    parser.add_argument(
        "--form",
        default=None,
        choices=list(PROMPT_FORMS),
        help=f"default: {DEFAULT_FORM}, or {REFERENCE_FORM} with --reference-answers",
    )
    parser.add_argument("--pairs", type=_pairs, default=200, help="how many pairs, or 'all' decided pairs")
    parser.add_argument(
        "--reference-answers",
        type=Path,
        default=None,
        help=f"reference-guided judging with these answers (e.g. {DEFAULT_REFERENCES})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of AlpacaEval annotation JSONL")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "judge-agreement" / "cache.jsonl")
    parser.add_argument("--max-output-tokens", type=int, default=DEFAULT_MAX_OUTPUT_TOKENS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None, help="stop judging new pairs after this long")
    parser.add_argument("--speed", action="store_true", help="also time a pair of two 384-token replies")
    parser.add_argument(
        "--reference-judges",
        action="store_true",
        help="validate the reference-guided judges on all decided pairs (one JSON line each)",
    )
    parser.add_argument(
        "--llm-cache",
        type=Path,
        default=ROOT / "docs" / "judge-agreement-reference-cache.jsonl",
        help="--reference-judges: the reference-guided LLM judge's judgement cache",
    )
    args = parser.parse_args()
    try:
        if args.reference_judges:
            results = validate_reference_judges(
                args.data,
                args.reference_answers or DEFAULT_REFERENCES,
                args.llm_cache,
                args.judge,
                args.max_output_tokens,
                args.seed,
            )
        else:
            results = [
                measure_agreement(
                    args.judge,
                    args.data,
                    args.pairs,
                    args.seed,
                    args.cache,
                    form=args.form,
                    max_output_tokens=args.max_output_tokens,
                    threads=args.threads,
                    reference_answers=args.reference_answers,
                    max_seconds=args.max_seconds,
                    speed=args.speed,
                    progress=lambda done, total: print(f"{done}/{total}", file=sys.stderr, flush=True),
                )
            ]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(json.dumps(result))
    return 0


def _pairs(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'all'") from None


if __name__ == "__main__":
    sys.exit(main())
