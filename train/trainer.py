"""transformers' Trainer with a loss that runs the output head on labelled positions only."""

from __future__ import annotations

import time

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from .loss import labelled_positions, linear_cross_entropy_sum


def causal_lm_of(model):
    """The *ForCausalLM module inside a DistributedDataParallel and/or PeftModel wrapper."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# logits_to_keep as an empty index list: the model's forward computes no logits at all. With
# logits_to_keep=1 the head ran on one position per row, and because that slice of the hidden states is not
# contiguous and requires grad, torch's matmul did not fold it into one mm: it copied the 262k x 640 head
# weight once per row (1.3 GB at batch 4) for a bmm, every micro-batch.
NO_LOGITS = torch.empty(0, dtype=torch.long)


def labelled_loss_sum(model, batch: dict, chunk: int | None = None) -> tuple[torch.Tensor, int]:
    """(sum of response-token losses, number of response tokens) for a padded batch.

    The decoder runs through the model's own forward (under DDP that forward is what synchronises the
    gradients), asked for its final hidden states and no logits; the output head then runs on the
    labelled positions alone, in chunks."""
    causal_lm = causal_lm_of(model)
    outputs = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        use_cache=False,
        output_hidden_states=True,
        logits_to_keep=NO_LOGITS.to(batch["input_ids"].device),
    )
    hidden, targets = labelled_positions(outputs.hidden_states[-1], batch["labels"])
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    head = causal_lm.get_output_embeddings()
    return linear_cross_entropy_sum(hidden, head.weight, targets, softcap, chunk), targets.numel()


class EpochSeededLengthSampler(LengthGroupedSampler):
    """Length-grouped order drawn from (seed, epoch) alone. Trainer's own sampler draws from the global RNG
    when an epoch starts, which a resumed run has not restored yet: its order would differ from the
    uninterrupted run's, and so would its loss curve."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return super().__iter__()


class LabelledLossTrainer(Trainer):
    """compute_loss: decoder -> hidden states -> head and cross-entropy on labelled rows, in chunks.
    Logs tokens/s (input tokens without padding, wall clock between logs) beside the loss."""

    # The loss below is divided by the labelled-token count of the whole accumulation window, so
    # Trainer must not divide it by the number of accumulation steps again.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, loss_chunk: int | None = None, autocast_dtype=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_chunk = loss_chunk
        self.autocast_dtype = autocast_dtype
        # Makes Trainer count the labelled tokens of each accumulation window (num_items_in_batch).
        self.model_accepts_loss_kwargs = True
        self._last_log = (None, 0)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(example["input_ids"]) for example in dataset]
        # Grouped by the rows of one optimizer step over all processes: the launcher's data loader hands
        # each process its slice of a step, so N processes see the same steps as one process would.
        rows_per_step = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return EpochSeededLengthSampler(rows_per_step, lengths, self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        with torch.autocast(
            inputs["input_ids"].device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        ):
            total, count = labelled_loss_sum(model, inputs, self.loss_chunk)
        if num_items_in_batch is not None and model.training:
            denominator = num_items_in_batch
        else:
            denominator = max(count, 1)
        loss = total / denominator
        if num_items_in_batch is not None and model.training and self.args.average_tokens_across_devices:
            # num_items_in_batch counts the labelled tokens of all processes, and DDP averages the
            # gradients over processes: scaling back up makes the step the gradient of the sum over all
            # processes' tokens divided by their count, as in one process.
            loss = loss * self.accelerator.num_processes
        return (loss, {"loss": loss}) if return_outputs else loss

    def log(self, logs: dict, start_time: float | None = None) -> None:
        now, seen = time.perf_counter(), self.state.num_input_tokens_seen
        last_time, last_seen = self._last_log
        if "loss" in logs and last_time is not None and now > last_time:
            logs["tokens_per_second"] = round((seen - last_seen) / (now - last_time), 2)
        if "loss" in logs:
            self._last_log = (now, seen)
        super().log(logs, start_time)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._last_log[0] is None:  # first step of this session (fresh or resumed): start the clock
            this_batch = int(inputs["attention_mask"].sum())
            self._last_log = (time.perf_counter(), self.state.num_input_tokens_seen - this_batch)
        return super().training_step(model, inputs, num_items_in_batch)
