"""PoE decode speed vs plain llama.cpp decode, side by side in one process.

    python scripts/bench_poe.py [--model default] [--tokens 256] [--rounds 5] [--hf-reference]

Same prompts, greedy, a fixed number of new tokens (EOS ignored so both decode the same length);
plain and PoE alternate so drift in machine load hits both. The last line is one JSON object.
With --hf-reference, also the paper-style PoE in transformers (full forward per token, no KV cache)
on the same model and prompts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench_harness import median, rounds

from ijt_local.jsonl import read_jsonl
from ijt_local.rules.expert import load_rules
from ijt_local.runtime.batch import generate_one
from ijt_local.runtime.session import Session

PROMPTS = [
    "Give three tips for staying healthy.",
    "Write a haiku about autumn leaves.",
    "Explain why the sky is blue to a ten-year-old.",
]


def hf_reference_tok_s(session: Session, model_spec: str, prompts: list[str], tokens: int) -> float:
    """Tokens/s of the paper's decoding: the whole sequence through the model at every step."""
    import numpy as np
    import torch

    from ijt_local.train.base import load_base_model

    model, _tokenizer, _ = load_base_model(model_spec, device="cpu", dtype=torch.float32)
    model.eval()
    expert = session.rule_expert(load_rules())
    rates = []
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        ids = session.prompt_tokens(messages)
        state = expert.start(session.tokenize(prompt, special=False))
        started = time.perf_counter()
        with torch.inference_mode():
            for _ in range(tokens):
                logits = model(torch.tensor([ids])).logits[0, -1].float().numpy()
                logits = logits[: session.n_vocab] + state.scores()
                token = int(np.argmax(logits))
                state.accept(token)
                ids.append(token)
        rates.append(tokens / (time.perf_counter() - started))
    return median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--prompts", default=None, help="JSONL with `instruction` rows (default: built-in)")
    parser.add_argument("--hf-reference", action="store_true")
    parser.add_argument("--hf-tokens", type=int, default=None, help="new tokens for the HF reference")
    args = parser.parse_args()

    prompts = [r["instruction"] for r in read_jsonl(args.prompts)] if args.prompts else PROMPTS
    session = Session(args.model, threads=args.threads)
    rules = load_rules()
    session.rule_expert(rules)  # resolve the vocabulary outside the timed region

    def run(poe: bool) -> float:
        """Decode tokens/s over all prompts (prefill excluded)."""
        n, seconds = 0, 0.0
        for prompt in prompts:
            g = generate_one(
                session,
                [{"role": "user", "content": prompt}],
                exact=False,  # llama.cpp's one-row steps, as plain llama.cpp decodes a lone prompt
                max_tokens=args.tokens,
                rules=rules if poe else None,
                ignore_eos=True,
                stop_at_role_tags=False,
            )
            n += g.n_tokens
            seconds += g.seconds - g.prefill_seconds
        return n / seconds

    def progress(index: int, rates: dict) -> None:
        plain, poe = rates["plain"][-1], rates["poe"][-1]
        print(f"round {index + 1}: plain {plain:.1f} tok/s, poe {poe:.1f} tok/s", file=sys.stderr)

    run(False), run(True)  # warm-up: page in weights, build caches
    rates = rounds(args.rounds, {"plain": lambda: run(False), "poe": lambda: run(True)}, after_round=progress)
    plain, poe = rates["plain"], rates["poe"]

    result = {
        "model": args.model,
        "vocab_size": session.n_vocab,
        "tokens": args.tokens,
        "prompts": len(prompts),
        "rounds": args.rounds,
        "plain_tok_s": median(plain, 2),
        "poe_tok_s": median(poe, 2),
        "ratio": median([p / q for p, q in zip(poe, plain)], 4),
    }
    if args.hf_reference:
        hf = hf_reference_tok_s(session, args.model, prompts, args.hf_tokens or args.tokens)
        result["hf_poe_tok_s"] = round(hf, 2)
        result["speedup_vs_hf"] = round(result["poe_tok_s"] / hf, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
