"""`ijt-local train`: LoRA tuning of a base model on chat rows, loss on the responses only.

out/
  adapter_config.json, adapter_model.safetensors   the PEFT adapter (what `convert` reads)
  run.json                                          base + hash, data hash, arguments, versions, results
  loss_curve.csv, loss_curve.png                    train loss per step, validation loss per epoch
  checkpoints/checkpoint-N/                         Trainer checkpoints, for --resume
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ijt_local.errors import UserError
from ijt_local.jsonl import write_atomic
from ijt_local.prompts import TULU

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class TrainConfig:
    base: str
    data: str
    out: str
    val: str | None = None
    epochs: float = 2.0
    lr: float = 2e-4
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    max_seq_len: int = 512
    batch_size: int = 4
    grad_accum: int = 1
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    resume: bool = False
    save_steps: int = 25
    max_steps: int = -1  # overrides epochs when > 0
    warmup_ratio: float = 0.03
    loss_chunk: int | None = None
    lane_dropout: bool = True  # False: peft's nn.Dropout masks (scripts/bench_train.py --against torch-dropout)
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        for name in ("rank", "batch_size", "grad_accum", "save_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise UserError(f"--epochs must be positive, got {self.epochs}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        for forbidden in ("lm_head", "embed_tokens"):
            if forbidden in self.target_modules:
                raise UserError(f"--target-modules {forbidden}: only the decoder's linear layers can take LoRA here")


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in ("ijt-local", "torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def checkpoint_dir(out: Path) -> Path:
    return out / "checkpoints"


def last_checkpoint(out: Path) -> Path | None:
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return None
    found = [
        p
        for p in folder.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()
    ]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def check_out_dir(config: TrainConfig, identity: dict) -> Path | None:
    """Refuse to clobber a finished or foreign run; returns the checkpoint to resume from, if any."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    identity_file = checkpoint_dir(out) / "run_identity.json"
    checkpoint = last_checkpoint(out)
    if not config.resume:
        if (out / "adapter_model.safetensors").exists() or checkpoint is not None:
            raise UserError(f"--out {out}: holds an earlier run; pass --resume to continue it, or pick another folder")
        return None
    if checkpoint is None:
        return None
    if identity_file.exists():
        earlier = json.loads(identity_file.read_text())
        for key, value in identity.items():
            if earlier.get(key) != value:
                raise UserError(f"--resume: {out} was trained with a different {key} ({earlier.get(key)!r})")
    return checkpoint


def save_adapter(model, out: Path) -> None:
    """Write the PEFT adapter files into `out` through a temporary folder and per-file renames."""
    tmp = out / f".adapter.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "README.md").unlink(missing_ok=True)  # peft's model-card stub
    for name in os.listdir(tmp):
        os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in str(exc).lower()


@dataclass
class RunSetup:
    """What a run settles before the model loads: where it writes, how the work is split over processes
    and devices, the base model and the tokenized data, and the checkpoint it resumes from."""

    out: Path
    processes: object  # train.distributed.Processes
    batch_per_process: int
    device: str
    backend: str | None
    dtype: object  # torch.dtype
    folder: Path
    base_info: dict
    tokenizer: object
    train_set: object  # train.data.TokenizedSet
    val_set: object | None
    resume_from: Path | None


def train_lora(config: TrainConfig, callbacks: list | None = None) -> dict:
    """Run (or resume) a LoRA training run; returns the run.json manifest."""
    config.check()
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    setup = prepare_run(config)
    model, lane_dropouts = lora_model(config, setup)
    trainer = make_trainer(config, setup, model, callbacks)
    # Read now: the checkpoint may be rotated away during training.
    resume_from = setup.resume_from
    tokens_before = (
        json.loads((resume_from / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0)
        if resume_from
        else 0
    )
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise UserError(
                f"out of memory on {setup.device} at batch size {config.batch_size} x {config.max_seq_len} "
                "tokens: lower --batch-size (raise --grad-accum to compensate) or --max-seq-len"
            ) from None
        raise
    wall = time.perf_counter() - started
    from .curve import curve_rows, write_curve

    history = trainer.state.log_history
    if setup.processes.is_main:  # the other processes hold the same weights and history
        save_adapter(trainer.model, setup.out)
        rows = write_curve(setup.out, history, run_title(config, setup))
    else:
        rows = curve_rows(history)
    session_tokens = trainer.state.num_input_tokens_seen - tokens_before
    manifest = run_manifest(config, setup, trainer, rows, lane_dropouts, session_tokens, wall)
    if setup.processes.is_main:
        write_atomic(setup.out / "run.json", json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def run_title(config: TrainConfig, setup: RunSetup) -> str:
    return f"{Path(config.data).name} on {setup.base_info.get('architecture')} ({config.base})"


def prepare_run(config: TrainConfig) -> RunSetup:
    """Devices and processes, the base model's folder and tokenizer, the tokenized data, and the checkpoint
    to resume from (an output folder of another run is refused); writes the run's identity."""
    from .base import base_folder, load_tokenizer
    from .data import tokenize_file
    from .device import pick_device, pick_dtype
    from .distributed import ddp_backend, launched_processes, per_process_batch

    out = Path(config.out)
    processes = launched_processes()
    batch_per_process = per_process_batch(config.batch_size, processes)  # a batch that cannot split: before any file
    device = pick_device(config.device)
    backend = ddp_backend(device, processes)
    dtype = pick_dtype(config.dtype, device)
    for path in filter(None, (config.data, config.val)):
        if not Path(path).is_file():
            raise UserError(f"{path}: no such data file")
    folder, base_info = base_folder(config.base)
    tokenizer = load_tokenizer(folder, config.base)
    train_set = tokenize_file(config.data, tokenizer, config.max_seq_len, TULU)
    val_set = tokenize_file(config.val, tokenizer, config.max_seq_len, TULU) if config.val else None
    identity = {
        "base_sha256": base_info.get("sha256"),
        "data_sha256": train_set.sha256,
        "max_seq_len": config.max_seq_len,
        "batch_size": config.batch_size,
        "grad_accum": config.grad_accum,
        "seed": config.seed,
        "rank": config.rank,
    }
    resume_from = check_out_dir(config, identity)
    checkpoint_dir(out).mkdir(parents=True, exist_ok=True)
    if processes.is_main:
        write_atomic(checkpoint_dir(out) / "run_identity.json", json.dumps(identity, indent=2))
    return RunSetup(
        out=out,
        processes=processes,
        batch_per_process=batch_per_process,
        device=device,
        backend=backend,
        dtype=dtype,
        folder=folder,
        base_info=base_info,
        tokenizer=tokenizer,
        train_set=train_set,
        val_set=val_set,
        resume_from=resume_from,
    )


def lora_model(config: TrainConfig, setup: RunSetup):
    """(the base model with LoRA layers, how many dropout layers use 16-bit lane masks)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from .base import load_model
    from .dropout import use_lane_dropout

    model = load_model(setup.folder, config.base, setup.base_info, device="cpu", dtype=setup.dtype)
    torch.manual_seed(config.seed)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
        bias="none",
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        raise UserError(f"--target-modules: {exc}") from None
    model.config.use_cache = False
    lane_dropouts = use_lane_dropout(model) if config.lane_dropout else 0
    if setup.dtype != torch.float32:
        # The LoRA weights stay float32 (for the optimizer) but see half-precision inputs: by default peft
        # copies every LoRA layer's input to float32 and autograd keeps those copies, ~1 GB on gemma-3-270m
        # at 4 x 256 tokens. Under autocast the small LoRA matmuls run in half precision instead.
        for module in model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
    return model, lane_dropouts


def make_trainer(config: TrainConfig, setup: RunSetup, model, callbacks: list | None):
    """The Trainer for this run: its arguments, the response-only loss, the padding collator, and the loss
    curve and progress callbacks in place of Trainer's printing."""
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from .callbacks import LossCurveWriter, LossProgress
    from .collate import PadToLongest
    from .trainer import LabelledLossTrainer

    device = setup.device
    args = TrainingArguments(
        output_dir=str(checkpoint_dir(setup.out)),
        per_device_train_batch_size=setup.batch_per_process,
        per_device_eval_batch_size=setup.batch_per_process,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.lr,
        lr_scheduler_type="linear",
        warmup_steps=config.warmup_ratio,
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        eval_strategy="epoch" if setup.val_set else "no",
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=device == "cpu",
        ddp_backend=setup.backend,
        report_to=[],
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length",
        include_num_input_tokens_seen="non_padding",
        prediction_loss_only=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=device == "cuda",
        disable_tqdm=not config.progress,
    )
    trainer = LabelledLossTrainer(
        model=model,
        args=args,
        train_dataset=setup.train_set.examples,
        eval_dataset=setup.val_set.examples if setup.val_set else None,
        data_collator=PadToLongest(setup.tokenizer.pad_token_id),
        processing_class=setup.tokenizer,
        loss_chunk=config.loss_chunk,
        autocast_dtype=None if setup.dtype == torch.float32 else setup.dtype,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # what Trainer prints logs with when the bar is off
    if config.progress:
        trainer.add_callback(LossProgress())
    trainer.add_callback(LossCurveWriter(setup.out, run_title(config, setup)))
    for callback in callbacks or []:
        trainer.add_callback(callback)
    return trainer


def run_manifest(
    config: TrainConfig, setup: RunSetup, trainer, rows: list[dict], lane_dropouts: int, session_tokens: int, wall
) -> dict:
    """run.json: the base and data (with hashes), the arguments, devices, versions, LoRA shape and results."""
    from .curve import epoch_means

    train_losses = [r["loss"] for r in rows if r.get("loss") not in ("", None)]
    val_losses = [r["val_loss"] for r in rows if r.get("val_loss") not in ("", None)]
    speeds = [r["tokens_per_second"] for r in rows if r.get("tokens_per_second") not in ("", None)]
    train_set, val_set, state = setup.train_set, setup.val_set, trainer.state
    return {
        "kind": "lora",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": setup.base_info,
        "template": TULU.name,
        "eos_token": setup.tokenizer.eos_token,
        "data": {"path": str(Path(config.data).resolve()), "sha256": train_set.sha256, **train_set.stats},
        "val": (
            {"path": str(Path(config.val).resolve()), "sha256": val_set.sha256, **val_set.stats} if val_set else None
        ),
        "args": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items() if k != "extra"},
        "device": setup.device,
        "dtype": str(setup.dtype).replace("torch.", ""),
        "processes": {
            "world_size": setup.processes.world_size,
            "backend": setup.backend,
            "batch_per_process": setup.batch_per_process,
            "effective_batch": config.batch_size * config.grad_accum,
        },
        "versions": package_versions(),
        "lora": {
            "rank": config.rank,
            "alpha": config.alpha,
            "dropout": config.dropout,
            "dropout_masks": "16-bit lanes (train/dropout.py)" if lane_dropouts else None,
            "target_modules": list(config.target_modules),
            "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        },
        "results": {
            "steps": state.global_step,
            "epochs": state.epoch,
            "first_train_loss": train_losses[0] if train_losses else None,
            "final_train_loss": train_losses[-1] if train_losses else None,
            "final_val_loss": val_losses[-1] if val_losses else None,
            "epoch_mean_train_loss": [round(mean, 4) for _, _, mean in epoch_means(rows)],
            "val_loss_per_epoch": [round(v, 4) for v in val_losses],
            "tokens_seen": state.num_input_tokens_seen,
            "tokens_per_second": round(session_tokens / wall, 2) if session_tokens else None,
            "median_step_tokens_per_second": sorted(speeds)[len(speeds) // 2] if speeds else None,
            "wall_seconds_this_session": round(wall, 1),
            "resumed_from": str(setup.resume_from) if setup.resume_from else None,
        },
        **({"extra": config.extra} if config.extra else {}),
    }
