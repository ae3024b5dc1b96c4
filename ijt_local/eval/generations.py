"""Generations cached per model: one JSONL row per instruction, appended as each finishes, so an
interrupted run resumes where it stopped. A sidecar `.meta.json` records the settings the cache was made
with; reusing a cache with other settings is refused rather than silently mixed."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..jsonl import JsonlAppender, read_completed_rows, write_atomic
from .metrics import find_role_tag
from .prompt_sets import EvalPrompt

if TYPE_CHECKING:
    from ..runtime.specs import ModelSpec, ResolvedSpec, RunOptions


def cache_meta(
    spec: ModelSpec,
    max_tokens: int,
    temperature: float,
    seed: int,
    stop_at_role_tags: bool,
    constraint: tuple[str, str] | None = None,
) -> dict:
    """What a cache's generations were made with; a constraint by its kind and its file's sha256, so the
    same schema elsewhere reuses the cache and an edited one does not."""
    meta = {
        "spec": spec.text,
        **({"rules": spec.rule_names()} if spec.poe else {}),
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
        "stop_at_role_tags": stop_at_role_tags,
    }
    if constraint is not None:
        kind, path = constraint
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as exc:
            raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        meta["constraint"] = {"kind": kind, "sha256": digest}
    return meta


def check_cache_meta(cache: Path, meta: dict) -> None:
    meta_path = cache.with_suffix(".meta.json")
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if old != meta and cache.exists() and cache.stat().st_size > 0:
            raise UserError(
                f"{cache}: cached generations were made with {old}, not {meta}; "
                "use another --out directory or delete that file"
            )
    write_atomic(meta_path, json.dumps(meta, indent=1) + "\n")


def cached_rows(cache: Path, prompts: list[EvalPrompt]) -> dict[str, dict]:
    """Cached rows by id; a row whose instruction (or turns) changed since (an edited prompts file) is stale."""
    wanted = {p.id: (p.instruction, list(p.turns) if p.turns else None) for p in prompts}
    return {
        row["id"]: row
        for row in read_completed_rows(cache)
        if row.get("id") in wanted and (row.get("instruction"), row.get("turns")) == wanted[row["id"]]
    }


def cache_row(session, prompt: EvalPrompt, generations: list) -> dict:
    """One cache row for a prompt's replies (one per turn): `output`, `finish_reason`, `role_tag` and
    `n_tokens` describe the last reply; a multi-turn row also keeps `turns`, `outputs`, `turn_tokens`."""
    gen = generations[-1]
    # With stop_at_role_tags the runtime cuts the tag from the text; find it in the raw tokens.
    raw = session.detokenize(gen.tokens)
    row = {
        "id": prompt.id,
        "instruction": prompt.instruction,
        "output": gen.text,
        "finish_reason": gen.finish_reason,
        "role_tag": find_role_tag(raw) or find_role_tag(gen.text),
        "n_tokens": gen.n_tokens,
    }
    if prompt.turns:
        row |= {
            "turns": list(prompt.turns),
            "outputs": [g.text for g in generations],
            "turn_tokens": [g.n_tokens for g in generations],
        }
    return row


def generate_cached(
    spec: ModelSpec | ResolvedSpec,
    prompts: list[EvalPrompt],
    cache: Path,
    max_tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
    stop_at_role_tags: bool = False,
    label: str | None = None,
    options: RunOptions | None = None,
    log=None,
    parallel: int | None = None,
    constraint: tuple[str, str] | None = None,
) -> list[dict]:
    """Rows for `prompts` in order, generating only the ones missing from `cache`.

    The model is loaded only when something is missing, so re-running a finished comparison only
    rebuilds its results and report. By default generation runs through role tags, as the paper's did
    (only EOS ends a reply), so a base model that goes on to play the user shows it in the output.

    With `parallel` > 1 the missing prompts are decoded that many at once (ijt_local.runtime.batch) and rows are
    appended as they finish; a row's `seconds` is the wall time since the previous row, so the rows' sum
    is the run's wall time whatever the width."""
    from ..runtime.specs import ResolvedSpec, RunOptions, open_spec

    resolved = spec if isinstance(spec, ResolvedSpec) else None
    spec = resolved.spec if resolved is not None else spec
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    cache = Path(cache)
    check_cache_meta(cache, cache_meta(spec, max_tokens, temperature, seed, stop_at_role_tags, constraint))
    done = cached_rows(cache, prompts)
    missing = [p for p in prompts if p.id not in done]
    name = label or spec.text
    if missing:
        from ..runtime.conversation import answer_turns, turns_to_answer
        from ..runtime.session import SamplingParams

        log(f"{name}: {len(done)} cached, generating {len(missing)} with {spec.text}")
        loaded = open_spec(resolved or spec, options or RunOptions())
        session, rules = loaded.session, loaded.rules
        sampling = SamplingParams(temperature=temperature, seed=seed)
        from ..runtime.grammar import constraint_scores

        scores = constraint_scores(session, constraint)
        try:
            with JsonlAppender(cache) as out:
                replies = answer_turns(
                    session,
                    [turns_to_answer(p.messages, p.turns) for p in missing],
                    rules,
                    parallel=parallel,
                    max_tokens=max_tokens,
                    sampling=sampling,
                    stop_at_role_tags=stop_at_role_tags,
                    scores=scores,
                )
                last = time.perf_counter()
                for index, generations in replies:
                    prompt = missing[index]
                    now = time.perf_counter()
                    row = cache_row(session, prompt, generations) | {"seconds": round(now - last, 3)}
                    if scores is not None:
                        row["grammar_complete"] = scores.grammar.complete(generations[-1].tokens)
                    last = now
                    out.write(row)
                    done[prompt.id] = row
                    log(f"{name}: {len(done)}/{len(prompts)} ({row['n_tokens']} tokens, {row['finish_reason']})")
        finally:
            session.close()
    return [done[p.id] for p in prompts]
