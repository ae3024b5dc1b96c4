"""Where the rule expert changes the base model's choice, as the serve page's token view shows it: for each
rule set, the share of greedy reply tokens whose base-model top token was another one, the share of first
tokens changed, and the largest rule score on a chosen token. Through serve's own Engine with logprobs.

    python scripts/rule_changes.py --prompts 16 --max-tokens 128 --rules eos,uniform,diversity --rules all

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ijt_local.data.home import shared_data_file  # noqa: E402
from ijt_local.jsonl import read_jsonl  # noqa: E402
from ijt_local.rules.expert import load_rules, rule_spec_text  # noqa: E402
from ijt_local.runtime.session import SamplingParams, Session  # noqa: E402
from ijt_local.serve.engine import Engine  # noqa: E402


def reply_choices(engine: Engine, instruction: str, rules, max_tokens: int) -> list:
    """The TokenChoice of every token of the greedy reply to `instruction`."""
    done, choices = threading.Event(), []

    def on_event(event) -> None:
        choices.extend(event.choices)
        if event.finish_reason is not None:
            done.set()

    engine.submit(
        [{"role": "user", "content": instruction}],
        on_event,
        max_tokens=max_tokens,
        sampling=SamplingParams(temperature=0.0),
        rules=rules,
        logprobs=1,
    )
    done.wait()
    return choices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompts", type=int, default=16, help="the first N val instructions")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rules", action="append", help="a rule set (repeatable; default: the paper's, and all)")
    args = parser.parse_args()
    val = shared_data_file("val/val.jsonl")
    if val is None:
        sys.exit("the val instructions are not in the data home (set IJT_LOCAL_DATA)")
    instructions = [row["instruction"] for row in read_jsonl(val)][: args.prompts]
    session = Session(args.model, n_ctx=4096)
    engine = Engine(session, width=8, seq_ctx=1024)
    result = {"model": args.model, "prompts": len(instructions), "max_tokens": args.max_tokens, "rule_sets": {}}
    try:
        for spec in args.rules or [None, "all"]:
            rules = load_rules(spec)
            replies = [reply_choices(engine, text, rules, args.max_tokens) for text in instructions]
            tokens = [choice for reply in replies for choice in reply]
            result["rule_sets"][rule_spec_text(rules.enabled)] = {
                "tokens": len(tokens),
                "changed": round(sum(c.changed for c in tokens) / len(tokens), 3),
                "first_token_changed": round(sum(r[0].changed for r in replies if r) / len(replies), 3),
                "largest_rule_score": round(max(c.rule_score for c in tokens), 2),
                "first_tokens": sorted({session.detokenize([r[0].token]) for r in replies if r})[:8],
            }
    finally:
        engine.close()
        session.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
