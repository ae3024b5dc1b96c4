"""Measure, on this machine, which llama_decode row counts give a row bit-identical logits (rows.py's plan).

The probe takes one fixed sequence (`PROBE_TEXT`, a 16-token prefix already in the cache) and decodes its
next tokens in calls of 1 to PROBE_ROWS rows:
  - decode steps: the sequence's next token as one row beside n - 1 one-token sequences, first in the call
    with only its row wanting logits (a lone reply's padded step), and last with every row wanting logits
    (a full batch's tail row);
  - prompt calls: its next k tokens in one call, every row's logits kept.
Each row's logits are hashed, and the plan is the cheapest (group, minimum) under which every allowed row
count gives the same hash for the same token: for steps, the one that pads least over widths 1..32; for
prompt calls, the smallest minimum. The probe also times a lone step of one row against the padded one, so
the single-stream paths can choose to decode batch-invariantly when it costs little (`padded_cost`).

The result depends on the model file, the llama.cpp build, the CPU's features and GPU offload, so it is
cached under ~/.cache/ijt-local/rows/ keyed by all of them; an unreadable entry is probed again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..jsonl import write_atomic
from ..models import cache_dir
from .llama import LlamaModel, backend_identity
from .rows import RowPlan

FORMAT = 1
PROBE_ROWS = 32  # the widest call probed: the default --parallel
PROMPT_ROWS = 16  # the longest prompt call probed
PREFIX = 16
PROMPT_TEXTS = 2
SPLITS = (1, 2, 4, 8)  # sizes of the second call when a prompt's tokens go in two
TOKENS = 8  # distinct probe tokens: some tokens' rows agree across kernels that differ for others
PROBE_TEXT = (
    "The quick brown fox jumps over the lazy dog, then runs far into the deep dark forest where nobody has "
    "ever been, singing loudly about rivers, mountains and the long road home before the night falls."
)
GROUPS = (1, 2, 4, 8, 16)
TIMING_REPEATS = 7


@dataclass
class ProbeResult:
    plan: RowPlan
    step_classes: list[list[str]]  # step row counts that agree, e.g. [["1", "2", "3"], ["4", "8", ...], ...]
    prompt_classes: list[list[str]]  # prompt call sizes that agree
    one_row_ms: float  # a lone decode step of one row
    padded_ms: float  # the same step padded to plan.step_rows(1)
    seconds: float  # the probe's own time
    cached: bool = False
    identity: dict = field(default_factory=dict)

    @property
    def padded_cost(self) -> float:
        """A lone batch-invariant step's time over a one-row step's (1.0: padding is free)."""
        return self.padded_ms / self.one_row_ms if self.one_row_ms > 0 else 1.0

    def summary(self) -> str:
        plan = self.plan
        if not plan.invariant:
            return "no row count gives every row the same logits here: replies may depend on the batch"
        return (
            f"decode steps of {plan.step_min}+ rows in {plan.step_group}s, prompt calls of {plan.prompt_min}+ "
            f"rows in {plan.prompt_group}s; a lone padded step costs {self.padded_cost:.2f}x a one-row step"
        )


def probe_identity(llama: LlamaModel) -> dict:
    stat = llama.path.stat()
    return {
        "format": FORMAT,
        "path": str(llama.path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "gpu_layers": llama.gpu_layers,
        "repack": llama.repack,
        **backend_identity(),
    }


def _cache_file(identity: dict) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "rows" / f"{key}.json"


def load_or_probe(llama: LlamaModel, threads: int) -> ProbeResult:
    """This model's probe result from the cache when it holds one for this file, build and machine; else
    probed now (seconds) and cached."""
    identity = probe_identity(llama)
    where = _cache_file(identity)
    cached = _read(where, identity)
    if cached is not None:
        return cached
    result = probe(llama, threads)
    result.identity = identity
    record = asdict(result)
    try:
        write_atomic(where, json.dumps(record))
    except UserError:
        pass  # a read-only cache costs a probe next time, nothing else
    return result


def forget_probe(llama: LlamaModel) -> None:
    """Drop this model's cached probe result (the next use probes again)."""
    _cache_file(probe_identity(llama)).unlink(missing_ok=True)


def _read(where: Path, identity: dict) -> ProbeResult | None:
    try:
        record = json.loads(where.read_text(encoding="utf-8"))
        if record["identity"] != identity:
            return None
        plan = RowPlan(**record.pop("plan"))
        record.pop("cached", None)
        result = ProbeResult(plan=plan, cached=True, **record)
        float(result.one_row_ms) + float(result.padded_ms)
        return result
    except (OSError, ValueError, KeyError, TypeError):
        return None


def probe(llama: LlamaModel, threads: int, rows: int = PROBE_ROWS) -> ProbeResult:
    """Probe `llama` in a context of its own (rows + 1 sequences); see the module's docstring."""
    started = time.perf_counter()
    tokens = (llama.tokenize(PROBE_TEXT, add_bos=True, special=False) * 4)[: PREFIX + rows + 5 * PROMPT_TEXTS]
    try:
        context = llama.new_context(64 * (rows + 1), rows + 1, threads)
    except ValueError as exc:
        raise UserError(f"{llama.path.name}: llama.cpp cannot make the probe's context ({exc})") from None
    try:
        context.decode([(t, p, 0, False) for p, t in enumerate(tokens[:PREFIX])])
        steps = _probe_steps(context, tokens, rows)
        prompts = _probe_prompts(context, tokens, min(rows, PROMPT_ROWS))
        step = _step_plan(steps, rows)
        prompt = _prompt_plan(prompts, min(rows, PROMPT_ROWS))
        if step is None or prompt is None:
            plan = RowPlan(invariant=False)
        else:
            plan = RowPlan(step[0], step[1], prompt[0], prompt[1])
        one_row_ms, padded_ms = _timings(context, tokens, plan.step_rows(1))
        if plan.step_rows(1) == 1:
            padded_ms = one_row_ms  # nothing is padded
    finally:
        context.close()
    return ProbeResult(
        plan=plan,
        step_classes=_step_classes(steps, rows),
        prompt_classes=_prompt_classes(prompts, min(rows, PROMPT_ROWS)),
        one_row_ms=one_row_ms,
        padded_ms=padded_ms,
        seconds=time.perf_counter() - started,
    )


def _digest(row: np.ndarray) -> str:
    return hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest()


def _step(context, tokens: list[int], n: int, alone: bool) -> list[str]:
    """One n-row decode step of copies of the probe prefix. `alone`: row 0 holds probe token n % TOKENS and
    is the only row wanting logits, the rest are one-token pad sequences (a lone reply's padded step);
    else row i holds probe token i % TOKENS (a full batch), and the first TOKENS rows and the last four
    want logits. Sequence ids rise with the rows, as in a batched step (llama.cpp splits a step whose ids
    do not). {row: hash} of the rows with logits."""
    rows = []
    wanted = {0} if alone else {i for i in range(n) if i < TOKENS or i >= n - 4}
    for i in range(n):
        if i == 0 or not alone:
            context.copy(0, i + 1)
            token = tokens[PREFIX + (n if alone else i) % TOKENS]
            rows.append((token, PREFIX, i + 1, i in wanted))
        else:
            rows.append((1000 + 7 * i, 0, i + 1, False))
    context.decode(rows)
    digests = {i: _digest(context.logits_row(i)) for i in sorted(wanted)}
    for seq_id in range(1, n + 1):
        context.remove(seq_id)
    return digests


def _probe_steps(context, tokens: list[int], rows: int) -> dict[tuple, str]:
    """Hashes keyed ("alone", n) and (n, i) for row i of a full n-row step."""
    steps = {}
    for n in range(1, rows + 1):
        steps[("alone", n)] = _step(context, tokens, n, alone=True)[0]
        for i, digest in _step(context, tokens, n, alone=False).items():
            steps[(n, i)] = digest
    return steps


def _probe_prompts(context, tokens: list[int], rows: int) -> dict[tuple, str]:
    """Hashes of prompt rows continuing a 16-token prefix, for PROMPT_TEXTS prefixes (offsets into the probe
    text): keyed (text, (k,), j) for row j of one k-row call (logits for the first and last four rows and
    the middle one: an output row on a large vocabulary costs more than the rest of a small model's row),
    and (text, (k - m, m), k - 1) for the last row when the same k tokens go in two calls, the second of m
    rows (how a prompt whose prefix is cached is finished)."""
    prompts = {}
    for text in range(PROMPT_TEXTS):
        seq_id, offset = text + 1, text * 5
        context.decode([(t, p, seq_id, False) for p, t in enumerate(tokens[offset : offset + PREFIX])])
        for k in range(1, rows + 1):
            continuation = tokens[offset + PREFIX : offset + PREFIX + k]
            wanted = {j for j in (0, 1, 2, 3, k // 2, k - 4, k - 3, k - 2, k - 1) if 0 <= j < k}
            context.decode([(t, PREFIX + j, seq_id, j in wanted) for j, t in enumerate(continuation)])
            for j in sorted(wanted):
                prompts[(text, (k,), j)] = _digest(context.logits_row(j))
            context.remove(seq_id, PREFIX)
            for m in SPLITS:
                if m >= k:
                    continue
                context.decode([(t, PREFIX + j, seq_id, False) for j, t in enumerate(continuation[: k - m])])
                last = [(t, PREFIX + k - m + j, seq_id, j == m - 1) for j, t in enumerate(continuation[k - m :])]
                context.decode(last)
                prompts[(text, (k - m, m), k - 1)] = _digest(context.logits_row(m - 1))
                context.remove(seq_id, PREFIX)
        context.remove(seq_id)
    return prompts


def _timings(context, tokens: list[int], padded: int) -> tuple[float, float]:
    """Median ms of a lone one-row step and of the same step padded to `padded` rows, timed alternately."""
    one, more = [], []
    for _ in range(TIMING_REPEATS):
        for n, samples in ((1, one), (padded, more)):
            begun = time.perf_counter()
            _step(context, tokens, n, alone=True)
            samples.append(time.perf_counter() - begun)
    return 1000 * float(np.median(one)), 1000 * float(np.median(more))


def _allowed(group: int, least: int, rows: int) -> list[int]:
    return [n for n in range(least, rows + 1) if n % group == 0]


def _plans(rows: int):
    for group in GROUPS:
        for least in range(group, rows + 1, group):
            if least + group <= rows:  # at least two row counts to compare
                yield group, least


def _step_plan(steps: dict[tuple, str], rows: int) -> tuple[int, int] | None:
    """The (group, minimum) that pads least over widths 1..rows among those under which each probe token
    gets one hash in every allowed step, alone or in a full batch, wherever its row sits."""

    def agrees(group: int, least: int) -> bool:
        sizes = _allowed(group, least, rows)
        by_token: dict[int, set[str]] = {}
        for n in sizes:
            by_token.setdefault(n % TOKENS, set()).add(steps[("alone", n)])
            for i in range(n):
                if (n, i) in steps:
                    by_token.setdefault(i % TOKENS, set()).add(steps[(n, i)])
        return all(len(hashes) == 1 for hashes in by_token.values())

    valid = [(group, least) for group, least in _plans(rows) if agrees(group, least)]
    if not valid:
        return None
    return min(valid, key=lambda gm: (sum(RowPlan(*gm).step_rows(w) for w in range(1, rows + 1)), gm[0]))


def _prompt_plan(prompts: dict[tuple, str], rows: int) -> tuple[int, int] | None:
    """The (group, minimum) with the smallest minimum (then group) under which every probed token's row
    gets one hash however its tokens were cut into calls of allowed sizes."""
    for least in range(1, rows):
        for group in GROUPS:
            if least % group or least + group > rows:
                continue
            sizes = set(_allowed(group, least, rows))
            by_position: dict[tuple[int, int], set[str]] = {}
            for (text, calls, j), digest in prompts.items():
                if all(size in sizes for size in calls):
                    by_position.setdefault((text, j), set()).add(digest)
            if all(len(hashes) == 1 for hashes in by_position.values()):
                return group, least
    return None


def _step_classes(steps: dict[tuple, str], rows: int) -> list[list[str]]:
    """Step row counts grouped by the logits they give one probe token's row (first in a full step), for
    the token whose rows split into the most groups."""
    per_token = [_classes({str(n): steps[(n, j)] for n in range(j + 1, rows + 1)}) for j in range(TOKENS)]
    return max(per_token, key=len)


def _prompt_classes(prompts: dict[tuple, str], rows: int) -> list[list[str]]:
    """Prompt call sizes grouped by the logits they give one row (one of the first four of a text), for
    the row that splits into the most groups."""
    per_row = [
        _classes({str(k): prompts[(text, (k,), j)] for k in range(j + 1, rows + 1)})
        for text in range(PROMPT_TEXTS)
        for j in range(4)
    ]
    return max(per_row, key=len)


def _classes(hashes: dict[str, str]) -> list[list[str]]:
    """Keys grouped by equal hash, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for key, digest in hashes.items():
        groups.setdefault(digest, []).append(key)
    return list(groups.values())
