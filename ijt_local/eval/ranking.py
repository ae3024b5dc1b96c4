"""`ijt-local eval ranking` (paper §4.2): does the model rank an instruction's own response above a random
other response? For each instruction x_i with response y_i, a random j != i is drawn (seeded) and the
pair counts as ranked correctly when

    mean log p(y_i | x_i)  >  mean log p(y_j | x_i)

(log-probabilities per response token, through llama.cpp; for a `+poe` spec the normalised product-of-
experts log-probability, logit + rule score − logsumexp). Ties count half. Responses are cut to
`max_response_tokens` first so long answers fit the context. Scores are cached row by row when `out`
is given, and a rerun resumes.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from ..errors import UserError
from ..jsonl import JsonlAppender, read_completed_rows
from ..specs import check_spec, open_spec, parse_spec
from .generations import check_cache_meta
from .prompt_sets import load_prompts


def pick_others(n: int, seed: int) -> list[int]:
    """For each i, a random j != i."""
    rng = random.Random(seed)
    others = []
    for i in range(n):
        j = rng.randrange(n - 1)
        others.append(j + 1 if j >= i else j)
    return others


def cut_to_tokens(session, text: str, max_tokens: int) -> str:
    """`text` cut to its first `max_tokens` tokens in `session`'s vocabulary (unchanged if it fits)."""
    tokens = session.tokenize(text, special=False)
    return text if len(tokens) <= max_tokens else session.detokenize(tokens[:max_tokens])


def ranking_accuracy(rows: list[dict]) -> dict:
    wins = [1.0 if r["own"] > r["other"] else 0.5 if r["own"] == r["other"] else 0.0 for r in rows]
    n = len(wins)
    mean = sum(wins) / n
    se = math.sqrt(sum((w - mean) ** 2 for w in wins) / (n - 1) / n) if n > 1 else None
    return {
        "pairs": n,
        "ranking_accuracy": mean,
        "standard_error": se,
        "mean_own_logprob": sum(r["own"] for r in rows) / n,
        "mean_other_logprob": sum(r["other"] for r in rows) / n,
    }


def run_ranking(
    spec_text: str,
    data: str | Path,
    out: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    max_response_tokens: int = 512,
    threads: int | None = None,
    log=None,
) -> dict:
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    spec = parse_spec(spec_text)
    prompts = load_prompts(data, limit=limit)
    missing = [p.id for p in prompts if not (p.reference or "").strip()]
    if missing:
        raise UserError(f"{data}: row {missing[0]} has no response to rank (needs an assistant turn or `output`)")
    if len(prompts) < 2:
        raise UserError(f"{data}: ranking needs at least two instruction-response pairs")
    check_spec(spec)
    others = pick_others(len(prompts), seed)
    done: dict[str, dict] = {}
    appender = None
    if out is not None:
        out = Path(out)
        check_cache_meta(
            out, {"spec": spec.text, "data": str(data), "seed": seed, "max_response_tokens": max_response_tokens}
        )
        done = {row["id"]: row for row in read_completed_rows(out)}
    # a cached row counts only if it paired the same two responses (--limit changes the random pairing)
    todo = [i for i, p in enumerate(prompts) if p.id not in done or done[p.id].get("other_id") != prompts[others[i]].id]
    if todo:
        session, rules = open_spec(spec, threads=threads)
        appender = JsonlAppender(out) if out is not None else None
        try:
            for i in todo:
                prompt, other = prompts[i], prompts[others[i]]
                own_text = cut_to_tokens(session, prompt.reference, max_response_tokens)
                other_text = cut_to_tokens(session, other.reference, max_response_tokens)
                own = session.score_response(prompt.messages, own_text, rules)
                alt = session.score_response(prompt.messages, other_text, rules)
                row = {
                    "id": prompt.id,
                    "other_id": other.id,
                    "own": own.mean_logprob,
                    "other": alt.mean_logprob,
                    "own_tokens": own.n_tokens,
                    "other_tokens": alt.n_tokens,
                }
                done[prompt.id] = row
                if appender is not None:
                    appender.write(row)
                log(f"ranking: {len(done)}/{len(prompts)}")
        finally:
            session.close()
            if appender is not None:
                appender.close()
    rows = [done[p.id] for p in prompts]
    return {
        "model": spec.describe(),
        "data": str(data),
        "seed": seed,
        "max_response_tokens": max_response_tokens,
    } | ranking_accuracy(rows)
