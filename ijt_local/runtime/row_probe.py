"""Measure, on this machine, which llama_decode row counts give a row bit-identical logits (rows.py's plan).

The probe copies one fixed 16-token prefix (`PROBE_TEXT`) into many sequences and decodes next tokens:
  - decode steps of 1 to PROBE_ROWS rows (`step_counts`): alone, the probe row first beside one-token pad
    sequences and the only row wanting logits (a lone reply's padded step); and full, every row a probe
    row wanting logits, eight different probe tokens rotating over the positions (some tokens' rows agree
    across kernels that differ for others, and a call's tail rows must see several);
  - prompt calls of 1 to PROMPT_ROWS rows over two texts, in one call, and (with a single logits row, as a
    prefill) split in two, the second call of 1, 2, 4 or 8 rows (how a cached prefix is finished).
Each row's logits are hashed. A step plan (group, minimum) is valid when every allowed row count gives each
probe token one hash; with `pad_logits` off the lone steps must agree too, with it on (pad rows want logits,
for models where the number of logits rows is a regime of its own) only the full ones. The cheapest valid
plan of each kind is timed as a lone step, and the faster kept (the one without logits when both pad to the
same rows). The prompt plan is the smallest minimum under which one-call rows agree with each other and
single-logits rows with each other. The lone step's time against a one-row step (`padded_cost`) lets the
single-stream paths decode batch-invariantly by default where that costs little.

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

FORMAT = 3
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
    steps_like_widest: list[int]  # step row counts whose every probed row equals a full PROBE_ROWS step's
    prompts_like_widest: list[int]  # prompt call sizes whose every probed row equals the widest call's
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
        logits = ", pad rows wanting logits too" if plan.pad_logits else ""
        return (
            f"decode steps of {plan.step_min}+ rows in {plan.step_group}s{logits}, prompt calls of "
            f"{plan.prompt_min}+ rows in {plan.prompt_group}s; a lone padded step costs {self.padded_cost:.2f}x "
            "a one-row step"
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
        prompt = _prompt_plan(prompts, min(rows, PROMPT_ROWS))
        candidates = [
            RowPlan(group, least, prompt[0], prompt[1], pad_logits=pad_logits)
            for group, least, pad_logits in _step_plans(steps, rows)
        ]
        if prompt is None or not candidates:
            candidates = [RowPlan(invariant=False)]
        if len(candidates) == 2 and candidates[0].step_rows(1) == candidates[1].step_rows(1):
            candidates = candidates[:1]  # the same rows either way: pads need not want logits
        timed = [(_timings(context, tokens, plan), plan) for plan in candidates]
        (one_row_ms, padded_ms), plan = min(timed, key=lambda entry: entry[0][1])
    finally:
        context.close()
    return ProbeResult(
        plan=plan,
        steps_like_widest=_steps_like_widest(steps, rows, plan.pad_logits),
        prompts_like_widest=_prompts_like_widest(prompts, min(rows, PROMPT_ROWS)),
        one_row_ms=one_row_ms,
        padded_ms=padded_ms,
        seconds=time.perf_counter() - started,
    )


def _digest(row: np.ndarray) -> str:
    return hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest()


def _step(context, tokens: list[int], n: int, alone: bool) -> dict[int, str]:
    """One n-row decode step of copies of the probe prefix. `alone`: row 0 holds probe token n % TOKENS and
    is the only row wanting logits, the rest are one-token pad sequences (a lone reply's padded step);
    else row i holds probe token (n + i) % TOKENS (so a call's tail rows hold other tokens at other
    counts) and every row wants logits (a full batch; the number of rows
    wanting logits is a row count too: llama.cpp runs the last layer's feed-forward and the output layer
    on those rows only). Sequence ids rise with the rows, as in a batched step (llama.cpp splits a step
    whose ids do not). {row: hash} of row 0, the first TOKENS rows and the last four."""
    if alone:
        rows, hashed = _lone_step(context, tokens[PREFIX + _token_index(n, 0)], n, 1), {0}
    else:
        rows, hashed = [], {i for i in range(n) if i < TOKENS or i >= n - 4}
        for i in range(n):
            context.copy(0, i + 1)
            rows.append((tokens[PREFIX + _token_index(n, i)], PREFIX, i + 1, True))
    context.decode(rows)
    digests = {i: _digest(context.logits_row(i)) for i in sorted(hashed)}
    for seq_id in range(1, n + 1):
        context.remove(seq_id)
    return digests


def _lone_step(context, token: int, n: int, logits_rows: int) -> list[tuple[int, int, int, bool]]:
    """The rows of a lone reply's step padded to n: the probe sequence's `token` first (its prefix copied
    into sequence 1), then one-token pad sequences; the first `logits_rows` rows want logits."""
    context.copy(0, 1)
    return [(token, PREFIX, 1, True)] + [(1000 + 7 * i, 0, i + 1, i < logits_rows) for i in range(1, n)]


def step_counts(rows: int) -> list[int]:
    """The step row counts probed: every count to 16, then enough above it to see groups of up to 8 and
    their tails (a model's cost in the probe grows with the rows it decodes)."""
    return sorted({n for n in range(1, 17)} | {n for n in (17, 19, 20, 23, 24, 28, 31, 32) if n <= rows} | {rows})


def _token_index(n: int, row: int) -> int:
    """Which probe token row `row` of an n-row step holds (a lone step's row 0 included)."""
    return (n + row) % TOKENS


def _probe_steps(context, tokens: list[int], rows: int) -> dict[tuple, str]:
    """Hashes keyed ("alone", n) and (n, i) for row i of a full n-row step."""
    steps = {}
    for n in step_counts(rows):
        steps[("alone", n)] = _step(context, tokens, n, alone=True)[0]
        for i, digest in _step(context, tokens, n, alone=False).items():
            steps[(n, i)] = digest
    return steps


def _probe_prompts(context, tokens: list[int], rows: int) -> dict[tuple, str]:
    """Hashes of prompt rows continuing a 16-token prefix, for PROMPT_TEXTS prefixes (offsets into the probe
    text): keyed (text, (k,), j) for row j of one k-row call (logits for the first and last four rows and
    the middle one: an output row on a large vocabulary costs more than the rest of a small model's row);
    and, with only the last row wanting logits as in a prefill, (text, ("last", k), k - 1) for one call and
    (text, ("last", k - m, m), k - 1) when the same k tokens go in two calls, the second of m rows (how a
    prompt whose prefix is cached is finished)."""
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
            if text > 0:  # the single-logits family on the first text only (a large model's probe time)
                continue
            # as a prefill decodes: only the last row wants logits, in one call or in two
            context.decode([(t, PREFIX + j, seq_id, j == k - 1) for j, t in enumerate(continuation)])
            prompts[(text, ("last", k), k - 1)] = _digest(context.logits_row(k - 1))
            context.remove(seq_id, PREFIX)
            for m in SPLITS:
                if m >= k:
                    continue
                context.decode([(t, PREFIX + j, seq_id, False) for j, t in enumerate(continuation[: k - m])])
                last = [(t, PREFIX + k - m + j, seq_id, j == m - 1) for j, t in enumerate(continuation[k - m :])]
                context.decode(last)
                prompts[(text, ("last", k - m, m), k - 1)] = _digest(context.logits_row(m - 1))
                context.remove(seq_id, PREFIX)
        context.remove(seq_id)
    return prompts


def _timings(context, tokens: list[int], plan: RowPlan) -> tuple[float, float]:
    """Median ms of a lone one-row step and of the same step as `plan` pads it, timed alternately."""
    padded = plan.step_rows(1)
    one, more = [], []
    for _ in range(TIMING_REPEATS):
        for n, logits_rows, samples in ((1, 1, one), (padded, plan.step_outputs(1), more)):
            rows = _lone_step(context, tokens[PREFIX], n, logits_rows)
            begun = time.perf_counter()
            context.decode(rows)
            samples.append(time.perf_counter() - begun)
            for seq_id in range(1, n + 1):
                context.remove(seq_id)
    if padded == 1:
        more = one  # nothing is padded
    return 1000 * float(np.median(one)), 1000 * float(np.median(more))


def _allowed(group: int, least: int, rows: int, probed: list[int] | None = None) -> list[int]:
    return [n for n in (probed or range(1, rows + 1)) if n >= least and n % group == 0]


def _plans(rows: int):
    for group in GROUPS:
        for least in range(group, rows + 1, group):
            if least + group <= rows:  # at least two row counts to compare
                yield group, least


def _step_plans(steps: dict[tuple, str], rows: int) -> list[tuple[int, int, bool]]:
    """The cheapest (group, minimum, pad_logits) under which each probe token gets one hash in every
    allowed step wherever its row sits: with pad_logits False (pads want no logits) the lone steps must
    agree with the full ones; with True (pads want logits too, so a step's logits rows are its rows) only
    the full ones need to. At most one plan of each kind, the one padding least over widths 1..rows."""

    def agrees(group: int, least: int, pad_logits: bool) -> bool:
        by_token: dict[int, set[str]] = {}
        for n in _allowed(group, least, rows, [n for n in range(1, rows + 1) if ("alone", n) in steps]):
            if not pad_logits:
                by_token.setdefault(_token_index(n, 0), set()).add(steps[("alone", n)])
            for i in range(n):
                if (n, i) in steps:
                    by_token.setdefault(_token_index(n, i), set()).add(steps[(n, i)])
        return all(len(hashes) == 1 for hashes in by_token.values())

    def padding(plan: tuple[int, int, bool]) -> int:
        return sum(RowPlan(*plan[:2]).step_rows(w) for w in range(1, rows + 1))

    found = []
    for pad_logits in (False, True):
        valid = [(g, m, pad_logits) for g, m in _plans(rows) if agrees(g, m, pad_logits)]
        if valid:
            found.append(min(valid, key=lambda plan: (padding(plan), plan[0])))
    return found


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
                family, sizes_used = (calls[0], calls[1:]) if calls[0] == "last" else ("one", calls)
                if all(size in sizes for size in sizes_used):  # one family per number of logits rows
                    by_position.setdefault((text, j, family), set()).add(digest)
            if all(len(hashes) == 1 for hashes in by_position.values()):
                return group, least
    return None


def _steps_like_widest(steps: dict[tuple, str], rows: int, pad_logits: bool) -> list[int]:
    """Probed row counts n whose steps give every probed token's row, at any position and (unless pad rows
    want logits) alone, the hash that token's row has in a full step of `rows` rows."""
    widest = {_token_index(rows, i): steps[(rows, i)] for i in range(TOKENS)}
    return [
        n
        for n in step_counts(rows)
        if (pad_logits or steps[("alone", n)] == widest[_token_index(n, 0)])
        and all(steps[(n, i)] == widest[_token_index(n, i)] for i in range(n) if (n, i) in steps)
    ]


def _prompts_like_widest(prompts: dict[tuple, str], rows: int) -> list[int]:
    """Prompt call sizes k whose one-call rows all have the hash the same row has in a `rows`-row call."""
    widest = {(text, j): digest for (text, calls, j), digest in prompts.items() if calls == (rows,)}
    sizes = {}
    for (text, calls, j), digest in prompts.items():
        if len(calls) == 1 and calls[0] != "last" and (text, j) in widest:
            sizes.setdefault(calls[0], []).append(digest == widest[(text, j)])
    return [k for k in sorted(sizes) if all(sizes[k])]
