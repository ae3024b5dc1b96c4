"""`ijt-local eval ranking` (paper §4.2): does the model rank an instruction's own response above random
other responses? For each instruction x_i with response y_i, N random others j != i are drawn (seeded; the
paper's `ratio_eval.py` pairs each real response with 5) and each (real, random) pair counts as ranked
correctly when

    mean log p(y_i | x_i)  >  mean log p(y_j | x_i)

(log-probabilities per response token, through llama.cpp; for a `+poe` spec the normalised product-of-
experts log-probability, logit + rule score − logsumexp). The paper's score, exp(−mean token loss), orders
responses the same way. Ties count half. The accuracy is the share of pairs ranked correctly; its standard
error is over instructions (an instruction's N pairs share its prompt and its own response). The prompt is
decoded once for its N + 1 responses (Session.score_responses). Responses are cut to
`max_response_tokens` first so long answers fit the context. Scores are cached row by row when `out` is
given, and a rerun resumes.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from ..errors import UserError
from ..jsonl import JsonlAppender, read_completed_rows
from .generations import check_cache_meta
from .prompt_sets import load_prompts

DEFAULT_OTHERS = 5  # random other responses per instruction, as the paper's ratio_eval.py


def pick_others(n: int, seed: int, others: int = 1) -> list[list[int]]:
    """For each i, `others` distinct random j != i. With one other it draws what `eval ranking` drew before
    --others existed, so those score caches stay valid."""
    if not 1 <= others <= n - 1:
        raise UserError(f"--others {others}: between 1 and {n - 1} for {n} instructions")
    rng = random.Random(seed)
    picked = []
    for i in range(n):
        chosen: list[int] = []
        while len(chosen) < others:
            j = rng.randrange(n - 1)
            j = j + 1 if j >= i else j
            if j not in chosen:
                chosen.append(j)
        picked.append(chosen)
    return picked


def row_others(row: dict) -> tuple[list[str], list[float]]:
    """(other ids, their scores) of a cache row; rows written before --others held one other."""
    if "other_ids" in row:
        return row["other_ids"], row["others"]
    return [row.get("other_id")], [row["other"]]


def ranking_accuracy(rows: list[dict]) -> dict:
    """The share of (real, random) pairs ranked correctly, with its standard error over instructions."""
    per_instruction, other_scores = [], []
    for row in rows:
        _, others = row_others(row)
        wins = [1.0 if row["own"] > o else 0.5 if row["own"] == o else 0.0 for o in others]
        per_instruction.append(sum(wins) / len(wins))
        other_scores += others
    n = len(per_instruction)
    mean = sum(per_instruction) / n
    se = math.sqrt(sum((w - mean) ** 2 for w in per_instruction) / (n - 1) / n) if n > 1 else None
    return {
        "instructions": n,
        "pairs": len(other_scores),
        "ranking_accuracy": mean,
        "standard_error": se,
        "mean_own_logprob": sum(r["own"] for r in rows) / n,
        "mean_other_logprob": sum(other_scores) / len(other_scores),
    }


def cut_to_tokens(session, text: str, max_tokens: int) -> str:
    """`text` cut to its first `max_tokens` tokens in `session`'s vocabulary (unchanged if it fits)."""
    tokens = session.tokenize(text, special=False)
    return text if len(tokens) <= max_tokens else session.detokenize(tokens[:max_tokens])


def run_ranking(
    spec_text: str,
    data: str | Path,
    out: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    max_response_tokens: int = 512,
    threads: int | None = None,
    log=None,
    others: int = DEFAULT_OTHERS,
) -> dict:
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    from ..runtime.specs import RunOptions, open_spec, parse_spec  # numpy and llama.cpp load with a verb, not --help

    spec = parse_spec(spec_text)
    prompts = load_prompts(data, limit=limit)
    missing = [p.id for p in prompts if not (p.reference or "").strip()]
    if missing:
        raise UserError(f"{data}: row {missing[0]} has no response to rank (needs an assistant turn or `output`)")
    if len(prompts) < 2:
        raise UserError(f"{data}: ranking needs at least two instruction-response pairs")
    others = min(others, len(prompts) - 1)  # a file of n pairs has n - 1 other responses to draw from
    drawn = pick_others(len(prompts), seed, others)
    wanted = {p.id: [prompts[j].id for j in drawn[i]] for i, p in enumerate(prompts)}
    done: dict[str, dict] = {}
    appender = None
    if out is not None:
        out = Path(out)
        meta = {"spec": spec.text, "data": str(data), "seed": seed, "max_response_tokens": max_response_tokens}
        check_cache_meta(out, meta | ({"rules": spec.rule_names()} if spec.poe else {}))
        done = {row["id"]: row for row in read_completed_rows(out)}
    # a cached row counts only if it scored the same other responses (--limit and --others change them)
    todo = [i for i, p in enumerate(prompts) if p.id not in done or row_others(done[p.id])[0] != wanted[p.id]]
    if todo:
        loaded = open_spec(spec, RunOptions(threads=threads))
        session, rules = loaded.session, loaded.rules
        appender = JsonlAppender(out) if out is not None else None
        try:
            for i in todo:
                prompt = prompts[i]
                texts = [prompt.reference, *(prompts[j].reference for j in drawn[i])]
                texts = [cut_to_tokens(session, text, max_response_tokens) for text in texts]
                own, *alts = session.score_responses(prompt.messages, texts, rules)
                row = {
                    "id": prompt.id,
                    "other_ids": wanted[prompt.id],
                    "own": own.mean_logprob,
                    "others": [alt.mean_logprob for alt in alts],
                    "own_tokens": own.n_tokens,
                    "other_tokens": [alt.n_tokens for alt in alts],
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
        "others": others,
        "max_response_tokens": max_response_tokens,
    } | ranking_accuracy(rows)
