"""How many rows each llama_decode call carries, so that a reply never depends on its batch.

llama.cpp's kernels change with the number of rows (tokens) a call computes, and a row's logits change
with them: a CPU's repacked Q4_K weights take 4-row gemm tiles and finish a call's trailing `rows % 4`
rows one at a time; attention over many query rows of one sequence switches kernels at 8 rows. Other
backends and quantizations switch elsewhere, or never. So the rule is not assumed: `row_probe.py`
measures, for each model file on each machine, which row counts give a row bit-identical logits, and
derives a `RowPlan` from it. Two kinds of call need a rule each:
  - a decode step: one row per running sequence, topped up with one-token pad sequences to
    `step_rows(n)`, a multiple of `step_group`, at least `step_min`;
  - a prompt call: many rows of one sequence, in whole `prompt_group`s of at least `prompt_min`
    (`prefill_ranges`); the last call reaches back over tokens already decoded when it would fall short,
    and a prompt shorter than `prompt_min` is padded after its end (`prompt_rows`). A token's KV cells are
    then the same however its prompt was cut into calls or shared a prefix with another.

On the AVX512 EPYC this was first measured on (gemma-3-270m Q4_K_M, repacked weights) the probe gives steps
of 4+ rows in 4s and prompt calls of 8+ rows; with repacking off, every step row count agrees.

Attention is the exception that stays: a decode step computes one query row per sequence, a prompt call
many, and the attention kernels differ between the two. So KV cells written by decode steps are never
reused as prompt cells (a finished sequence keeps only its prompt's, `BatchDecoder.release`); a
conversation's earlier replies are decoded again as part of the next prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RowPlan:
    step_group: int = 1
    step_min: int = 1
    prompt_group: int = 1
    prompt_min: int = 1
    invariant: bool = True  # False: the probe found no regime where rows agree; no padding then
    pad_logits: bool = False  # pad rows of a step want logits too (where the count of logits rows matters)

    def with_one_row_steps(self) -> RowPlan:
        """This plan's prompt calls with llama.cpp's unpadded decode steps (`--fast`): a lone reply's steps
        are one row, faster than a padded step, but its text may part from the batched one at a near tie."""
        return replace(self, step_group=1, step_min=1, pad_logits=False)

    def step_rows(self, n: int) -> int:
        """Rows a decode step of `n` sequences is padded to."""
        return max(self.step_min, -(-n // self.step_group) * self.step_group)

    def step_outputs(self, n: int) -> int:
        """Rows wanting logits in a step of `n` sequences: its real rows, or with pad_logits every row."""
        return self.step_rows(n) if self.pad_logits else n

    def prompt_call_rows(self, n: int) -> int:
        """Rows a prompt call of `n` tokens carries (whole groups, at least prompt_min)."""
        return max(self.prompt_min, -(-n // self.prompt_group) * self.prompt_group)

    def check_batch(self, n_batch: int) -> None:
        if n_batch % self.prompt_group or n_batch < self.prompt_min:
            raise ValueError(
                f"n_batch must be a multiple of {self.prompt_group}, at least {self.prompt_min} (got {n_batch})"
            )

    def prefill_ranges(self, cached: int, total: int, n_batch: int) -> list[tuple[int, int]]:
        """(start, end) token ranges that bring a sequence holding its first `cached` tokens (from earlier
        prompt calls) to `total`, each a whole number of prompt groups of at least prompt_min and at most
        `n_batch`. A range may start before the previous one ended: the caller removes the cells from its
        start and decodes those tokens again. A prompt shorter than prompt_min is one range (0, total)
        that the caller pads to prompt_min rows after its end."""
        self.check_batch(n_batch)
        group, least = self.prompt_group, self.prompt_min
        if total < least:
            return [(0, total)]
        start = max(0, min(cached, total - least))
        ranges = []
        while total - start > n_batch:
            ranges.append((start, start + n_batch))
            start += n_batch
        size = self.prompt_call_rows(total - start)
        if size > total:  # a prompt from position 0 that is not whole groups: its groups, then the last ones
            ranges.append((0, total - total % group))
            size = self.prompt_call_rows(least)
        ranges.append((total - size, total))
        return ranges

    def prompt_rows(
        self, tokens: list[int], start: int, end: int, seq_id: int, logits_last: bool
    ) -> list[tuple[int, int, int, bool]]:
        """(token, position, seq_id, wants_logits) rows decoding tokens[start:end] of one sequence, topped up
        to prompt_min with copies of its last token at the following positions (a prompt shorter than
        prompt_min; causal attention keeps them out of the real rows, and the caller removes their cells
        afterwards)."""
        rows = [(tokens[p], p, seq_id, logits_last and p == end - 1) for p in range(start, end)]
        rows += [(tokens[end - 1], p, seq_id, False) for p in range(end, start + self.prompt_min)]
        return rows


# A lone reply (chat) is decoded batch-invariantly by default where padding its step costs at most this
# much of a one-row step (Session.batch_invariant_by_default).
MAX_PADDED_COST = 1.2
