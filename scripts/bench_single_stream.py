"""What a batch-invariant lone reply costs, by model file: one-row steps against steps padded to the probed
plan, and the batched speed beside them.

    python scripts/bench_single_stream.py --model default [--model judge ...] [--no-repack] \
        [--prompts val.jsonl] [--count 6] [--max-tokens 48] [--width 16]

For each model, in one process: the probe's plan and its own timing of a lone step, then generated tok/s
over the same prompts (greedy, the paper's rules, EOS ignored so every run does the same work) three ways,
alternating and repeated (medians):
  fast         `chat --fast`: llama.cpp's one-row steps;
  invariant    `chat --batch-invariant`: the batch decoder at width 1, steps padded to the plan;
  batched      the batch decoder at `--width` over all prompts (the `generate --input` path);
and whether the two lone paths gave the same text. `--no-repack` loads the weights without llama.cpp's
CPU repacking (use_extra_bufts off), one of the options that could make a one-row step agree with a
batched one. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench_harness import VAL, user_conversations

from ijt_local.models import resolve_model
from ijt_local.rules.expert import load_rules
from ijt_local.runtime.batch import generate_all
from ijt_local.runtime.llama import backend_identity
from ijt_local.runtime.session import Session


def tok_s(session, conversations, width, exact, rules, max_tokens) -> tuple[float, list]:
    started = time.perf_counter()
    replies = dict(
        generate_all(
            session,
            conversations,
            width,
            exact=exact,
            rules=rules,
            max_tokens=max_tokens,
            ignore_eos=True,
            stop_at_role_tags=False,
        )
    )
    tokens = sum(g.n_tokens for g in replies.values())
    return tokens / (time.perf_counter() - started), [replies[i].tokens for i in range(len(conversations))]


def measure(spec: str, args, conversations, rules) -> dict:
    session = Session(resolve_model(spec), n_ctx=2048, threads=args.threads, repack=not args.no_repack)
    probe = session.row_probe
    session.rule_expert(rules)
    list(generate_all(session, conversations[:2], 2, max_tokens=4))  # page the weights in
    runs = {"fast": [], "invariant": [], "batched": []}
    texts = {}
    for _ in range(args.repeats):
        for name, width, exact in (("fast", 1, False), ("invariant", 1, True), ("batched", args.width, True)):
            speed, texts[name] = tok_s(session, conversations, width, exact, rules, args.max_tokens)
            runs[name].append(speed)
    medians = {name: round(statistics.median(values), 1) for name, values in runs.items()}
    result = {
        "model": session.model.path.name,
        "repack": not args.no_repack,
        "threads": session.threads,
        "plan": probe.plan.__dict__,
        "probe_seconds": round(probe.seconds, 1),
        "probe_padded_cost": round(probe.padded_cost, 2),
        "tok_s": medians,
        "invariant_vs_fast": round(medians["invariant"] / medians["fast"], 2),
        "same_lone_text": sum(a == b for a, b in zip(texts["fast"], texts["invariant"])),
        "same_as_batched": sum(a == b for a, b in zip(texts["invariant"], texts["batched"])),
        "prompts": len(conversations),
    }
    session.close()
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--prompts", default=str(VAL))
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-repack", action="store_true")
    args = parser.parse_args()
    conversations = user_conversations(args.prompts)[: args.count]
    rules = load_rules()
    results = [measure(spec, args, conversations, rules) for spec in args.model or ["default"]]
    print(json.dumps({"system": backend_identity()["system"], "max_tokens": args.max_tokens, "models": results}))


if __name__ == "__main__":
    main()
