"""How many rows each llama_decode call carries, so that a reply never depends on its batch.

llama.cpp's CPU kernels change with the number of rows (tokens) a call computes: repacked Q4_K weights
take 4-row gemm tiles and finish a call's last `rows % 4` rows one at a time, and the quantized matmuls
switch kernels at 4 and at 8 rows. Measured with bare llama.cpp on gemma-3-270m Q4_K_M (one sequence's
tokens teacher-forced, other rows beside it; `tests/test_batch_invariance.py` checks the consequences):
  - calls of 1-3 rows agree with each other, 4-7 rows with each other, and calls of 8 rows or more with
    each other, but the three regimes differ by up to ~1 in the logits;
  - within a call of 8+ rows, a row in the trailing `rows % 4` differs from the rest (9 rows: the 9th);
  - any row of a call whose row count is a multiple of 4 and at least 8 is bit-identical, whatever the
    other rows hold (other sequences, other lengths and positions, padding) and wherever it sits.
So every call here carries a multiple of ROW_GROUP rows, at least MIN_ROWS: a batched decode step is
topped up with one-token pad sequences (`step_rows`), and a prompt is decoded in whole groups, the last
group reaching back over tokens already decoded when it would fall short (`prefill_ranges`). A token's
KV cells are then the same however its prompt was cut into calls or shared a prefix with another.

Attention is the exception that stays: a decode step computes one query row per sequence, a prompt call
many, and llama.cpp's attention kernels differ between the two (vector dot for one row, tiled gemm for
more). So KV cells written by decode steps are never reused as prompt cells (`Session._prefill`); a
conversation's earlier replies are decoded again as part of the next prompt.
"""

from __future__ import annotations

ROW_GROUP = 4
MIN_ROWS = 8


def step_rows(n: int) -> int:
    """Rows a call of `n` real rows is padded to: a multiple of ROW_GROUP, at least MIN_ROWS."""
    return max(MIN_ROWS, -(-n // ROW_GROUP) * ROW_GROUP)


def prefill_ranges(cached: int, total: int, n_batch: int) -> list[tuple[int, int]]:
    """(start, end) token ranges that bring a sequence holding its first `cached` tokens (from earlier
    prompt calls) to `total`, each a whole number of row groups of at least MIN_ROWS and at most
    `n_batch`. A range may start before the previous one ended: the caller removes the cells from its
    start and decodes those tokens again. A prompt shorter than MIN_ROWS is one range (0, total) that the
    caller pads to MIN_ROWS rows after its end."""
    if n_batch % ROW_GROUP or n_batch < MIN_ROWS:
        raise ValueError(f"n_batch must be a multiple of {ROW_GROUP}, at least {MIN_ROWS} (got {n_batch})")
    if total < MIN_ROWS:
        return [(0, total)]
    start = max(0, min(cached, total - MIN_ROWS))
    ranges = []
    while total - start > n_batch:
        ranges.append((start, start + n_batch))
        start += n_batch
    size = step_rows(total - start)
    if size > total:  # a prompt from position 0 that is not whole groups: its groups, then the last 8
        ranges.append((0, total - total % ROW_GROUP))
        size = MIN_ROWS
    ranges.append((total - size, total))
    return ranges


def prompt_rows(
    tokens: list[int], start: int, end: int, seq_id: int, logits_last: bool
) -> list[tuple[int, int, int, bool]]:
    """(token, position, seq_id, wants_logits) rows decoding tokens[start:end] of one sequence, topped up
    to MIN_ROWS with copies of its last token at the following positions (a prompt shorter than MIN_ROWS;
    causal attention keeps them out of the real rows, and the caller removes their cells afterwards)."""
    rows = [(tokens[p], p, seq_id, logits_last and p == end - 1) for p in range(start, end)]
    rows += [(tokens[end - 1], p, seq_id, False) for p in range(end, start + MIN_ROWS)]
    return rows
