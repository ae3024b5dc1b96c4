"""Trainer callbacks: a progress bar showing loss and tokens/s, and the loss curve kept up to date."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from .curve import write_curve


class LossProgress(ProgressCallback):
    """Trainer's tqdm bar, with the latest loss and tokens/s as its postfix instead of printed dicts."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        postfix = {}
        if "loss" in logs:
            postfix["loss"] = f"{logs['loss']:.4f}"
        if "tokens_per_second" in logs:
            postfix["tok/s"] = f"{logs['tokens_per_second']:.1f}"
        if "eval_loss" in logs:
            self.training_bar.write(f"step {state.global_step}: val loss {logs['eval_loss']:.4f}")
        if postfix:
            self.training_bar.set_postfix(postfix, refresh=False)


class LossCurveWriter(TrainerCallback):
    """Rewrites loss_curve.csv/png in the run folder at every checkpoint and at the end."""

    def __init__(self, out_dir: Path, title: str):
        self.out_dir, self.title = Path(out_dir), title

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_curve(self.out_dir, state.log_history, self.title)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_curve(self.out_dir, state.log_history, self.title)
