"""Batched generation speed: aggregate tok/s by width, PoE on and off, against plain llama.cpp.

    python scripts/bench_batch.py [--model default] [--prompts val.jsonl] [--widths 1,2,4,8,16]
                                  [--max-tokens 128] [--steps 64] [--threads N]

Two measurements, side by side in one process on one loaded model:
  run    the `generate --input` path (ijt_local.runtime.batch.generate_all) over all prompts, greedy, stopping
         at EOS and role tags as users run it: aggregate generated tok/s per width, PoE off and on.
  limit  the same fixed work through plain llama.cpp and through ours: W prompts (each prefilled in a call
         of its own), then `--steps` greedy steps of one token per sequence (EOS ignored). `plain` is a bare
         llama_decode + argmax loop with no project code; `ours` is the BatchDecoder with the rule
         expert on. Their ratio is what the rule hook and per-row Python work cost.
  unpadded  the `run` PoE measurement again with the row-group padding switched off (steps carry only
         their running sequences, prompts go in n_batch pieces from position 0): what batch invariance
         (ijt_local/runtime/rows.py, the plan row_probe.py measured) costs, side by side.
The last line is one JSON object; per-width details go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench_harness import VAL, user_conversations

from ijt_local.rules.expert import load_rules
from ijt_local.runtime.batch import BatchDecoder, batch_decoder, generate_all
from ijt_local.runtime.rows import RowPlan
from ijt_local.runtime.session import Session


def run_tok_s(session: Session, conversations, width: int, max_tokens: int, rules) -> float:
    """Width 1 is the one-row path (`--fast`), today's single-stream baseline."""
    started = time.perf_counter()
    replies = generate_all(session, conversations, width, exact=width > 1, max_tokens=max_tokens, rules=rules)
    tokens = sum(g.n_tokens for _, g in replies)
    return tokens / (time.perf_counter() - started)


def unpadded_tok_s(session: Session, conversations, width: int, max_tokens: int, rules) -> float:
    """`run_tok_s` through a decoder of this width without the probed plan's padding (RowPlan(): steps carry
    only their running sequences, prompts go in n_batch pieces from position 0)."""
    decoder = BatchDecoder(session, width, plan=RowPlan())
    try:
        list(decoder.generate(conversations[:1], max_tokens=1))  # make its context outside the timing
        started = time.perf_counter()
        replies = decoder.generate(conversations, max_tokens=max_tokens, rules=rules)
        tokens = sum(g.n_tokens for _, g in replies)
        return tokens / (time.perf_counter() - started)
    finally:
        decoder.close()


def plain_llama_cpp_seconds(session: Session, prompts: list[list[int]], steps: int) -> tuple[float, float]:
    """(prefill seconds, decode seconds) of a bare multi-sequence greedy loop in the batch context: llama_decode
    and an argmax, with no rows padded, no rules and no stop handling."""
    decoder = batch_decoder(session, len(prompts))
    decoder.fit(max(len(p) for p in prompts) + steps + 1)
    context = decoder.context
    context.clear()

    def decode(entries):
        context.decode(entries)
        return context.logits_rows(sum(e[3] for e in entries)).argmax(axis=1)

    started = time.perf_counter()
    last = [int(decode([(t, i, seq, i == len(p) - 1) for i, t in enumerate(p)])[0]) for seq, p in enumerate(prompts)]
    prefilled = time.perf_counter()
    positions = [len(p) for p in prompts]
    for step in range(steps - 1):
        last = decode([(last[s], positions[s] + step, s, True) for s in range(len(prompts))]).tolist()
    context.clear()
    return prefilled - started, time.perf_counter() - prefilled


def ours_seconds(session: Session, conversations, steps: int, rules) -> float:
    started = time.perf_counter()
    for _, generation in generate_all(
        session,
        conversations,
        len(conversations),
        max_tokens=steps,
        rules=rules,
        ignore_eos=True,
        stop_at_role_tags=False,
    ):
        assert generation.n_tokens == steps
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompts", default=str(VAL))
    parser.add_argument("--widths", default="1,2,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, default=64, help="fixed steps per sequence for the limit")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--ctx", type=int, default=1024, help="context per sequence")
    args = parser.parse_args()

    widths = [int(w) for w in args.widths.split(",")]
    conversations = user_conversations(args.prompts)
    session = Session(args.model, n_ctx=args.ctx, threads=args.threads)
    rules = load_rules()
    session.rule_expert(rules)  # resolve the vocabulary outside the timed region
    list(generate_all(session, conversations[:2], 2, max_tokens=4))  # warm-up: page in the weights

    run = {"plain": {}, "poe": {}, "poe_unpadded": {}}
    for width in widths:
        for name, rule_config in (("plain", None), ("poe", rules)):
            run[name][width] = round(run_tok_s(session, conversations, width, args.max_tokens, rule_config), 1)
        if width > 1:
            unpadded = unpadded_tok_s(session, conversations, min(width, len(conversations)), args.max_tokens, rules)
            run["poe_unpadded"][width] = round(unpadded, 1)
        print(
            f"run width {width}: plain {run['plain'][width]} tok/s, poe {run['poe'][width]} tok/s, poe "
            f"unpadded {run['poe_unpadded'].get(width)} tok/s",
            file=sys.stderr,
            flush=True,
        )

    limit = {}
    for width in widths:
        chosen = (conversations * width)[:width]
        prompts = [session.prompt_tokens(messages) for messages in chosen]
        prefill, decode = plain_llama_cpp_seconds(session, prompts, args.steps)
        ours = ours_seconds(session, chosen, args.steps, rules)
        work = width * args.steps
        limit[width] = {
            "plain_decode_tok_s": round(work / decode, 1),
            "plain_tok_s": round(work / (prefill + decode), 1),
            "ours_poe_tok_s": round(work / ours, 1),
            "ours_vs_plain": round((prefill + decode) / ours, 3),
        }
        print(f"limit width {width}: {limit[width]}", file=sys.stderr, flush=True)

    best = max(widths, key=lambda w: run["poe"][w])
    single = run["poe"][widths[0]] if widths[0] == 1 else None
    print(
        json.dumps(
            {
                "model": args.model,
                "prompts": len(conversations),
                "max_tokens": args.max_tokens,
                "threads": session.threads,
                "single_tok_s": single,
                "best_width": best,
                "best_tok_s": run["poe"][best],
                "speedup": round(run["poe"][best] / single, 2) if single else None,
                "speedup_by_width": {w: round(run["poe"][w] / single, 2) for w in widths} if single else None,
                "padding_cost": {w: round(run["poe"][w] / run["poe_unpadded"][w], 3) for w in run["poe_unpadded"]},
                "run_tok_s": run,
                "limit_steps": args.steps,
                "limit": limit,
            }
        )
    )


if __name__ == "__main__":
    main()
