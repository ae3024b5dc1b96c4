"""Batches of tokenized examples, padded on the right to the longest example in the batch only.

Training samples batches with transformers' length-grouped sampler, so the examples of a batch have
similar lengths and padding stays small; pads get attention mask 0 and label -100.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import IGNORE


@dataclass
class PadToLongest:
    pad_token_id: int
    pad_to_multiple_of: int = 1

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        longest = max(len(e["input_ids"]) for e in examples)
        step = self.pad_to_multiple_of
        longest = -(-longest // step) * step
        input_ids = torch.full((len(examples), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), longest), IGNORE, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[row, :n] = torch.tensor(example["input_ids"])
            labels[row, :n] = torch.tensor(example["labels"])
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
