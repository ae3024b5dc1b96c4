"""Training throughput and memory: ijt-local's LoRA trainer vs a naive transformers Trainer + peft loop.

Both train the same base on the same tokenized LIMA subset (instruction variant, loss on responses), at the
same sequence length, batch size, LoRA rank/targets and number of steps, each in its own process so peak
RSS is its own. The baseline is what one writes first: float32 weights, every batch padded to the maximum
length, the model's own forward with `labels` (full-vocabulary logits at every position). ijt-local uses
its defaults: base weights in bf16 where the CPU multiplies bf16 natively, length-grouped batches padded to
the longest example, and the output head run only on labelled positions, in chunks.

Tokens/s counts real (non-padding) input tokens over the timed steps (the first step is a warm-up).
The last line printed is one JSON object.

    python scripts/bench_train.py [--base default] [--seq 256] [--batch 4] [--rank 16] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ijt_local.shared_data import shared_data_path

REPO = Path(__file__).resolve().parent.parent
LIMA = shared_data_path("lima/lima_data.jsonl")


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024 if sys.platform != "darwin" else peak / 2**20, 1)


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time and non-padding input tokens of each optimizer step."""

        def __init__(self):
            self.steps = []

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = (time.perf_counter(), state.num_input_tokens_seen)

        def on_step_end(self, args, state, control, **kwargs):
            start, seen = self._start
            # Trainer counts a step's tokens when it fetches the batch, after on_step_begin.
            self.steps.append((time.perf_counter() - start, state.num_input_tokens_seen - seen))

    return StepTimer()


def summarize(timer, warmup: int) -> dict:
    timed = timer.steps[warmup:]
    seconds = sum(s for s, _ in timed)
    tokens = sum(t for _, t in timed)
    return {"timed_steps": len(timed), "tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_second": round(tokens / seconds, 2) if seconds else None,
            "step_seconds": [round(s, 2) for s, _ in timer.steps]}


def run_ours(opts, data: Path, out: Path) -> dict:
    from ijt_local.train.lora import TrainConfig, train_lora

    timer = step_timer()
    config = TrainConfig(base=opts.base, data=str(data), out=str(out), max_seq_len=opts.seq, batch_size=opts.batch,
                         rank=opts.rank, alpha=2 * opts.rank, max_steps=opts.steps + opts.warmup,
                         save_steps=10**6, seed=0, progress=False, dtype=opts.dtype)
    manifest = train_lora(config, callbacks=[timer])
    return {**summarize(timer, opts.warmup), "dtype": manifest["dtype"], "peak_rss_mb": peak_rss_mb()}


def run_baseline(opts, data: Path, out: Path) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from ijt_local.train.base import base_folder
    from ijt_local.train.data import IGNORE, tokenize_file
    from ijt_local.train.lora import DEFAULT_TARGETS
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, _ = base_folder(opts.base)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    examples = tokenize_file(data, tokenizer, opts.seq).examples
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def pad_to_max_length(batch):
        n = opts.seq
        return {
            "input_ids": torch.tensor([e["input_ids"] + [pad] * (n - len(e["input_ids"])) for e in batch]),
            "labels": torch.tensor([e["labels"] + [IGNORE] * (n - len(e["labels"])) for e in batch]),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (n - len(e["input_ids"]))
                                            for e in batch]),
        }

    model = get_peft_model(model, LoraConfig(r=opts.rank, lora_alpha=2 * opts.rank, lora_dropout=0.05,
                                             target_modules=list(DEFAULT_TARGETS), task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=opts.batch,
                             max_steps=opts.steps + opts.warmup, learning_rate=2e-4, logging_steps=1,
                             save_strategy="no", report_to=[], use_cpu=True, seed=0,
                             remove_unused_columns=False, include_num_input_tokens_seen="non_padding",
                             disable_tqdm=True)
    timer = step_timer()
    Trainer(model=model, args=args, train_dataset=examples, data_collator=pad_to_max_length,
            callbacks=[timer]).train()
    return {**summarize(timer, opts.warmup), "dtype": "float32", "peak_rss_mb": peak_rss_mb()}


def worker(opts) -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        run = run_ours if opts.worker == "ours" else run_baseline
        result = run(opts, Path(opts.data), Path(tmp) / "out")
    print(json.dumps(result))


def spawn(opts, which: str, data: Path) -> dict:
    command = [sys.executable, __file__, "--worker", which, "--data", str(data), "--base", opts.base,
               "--seq", str(opts.seq), "--batch", str(opts.batch), "--rank", str(opts.rank),
               "--steps", str(opts.steps), "--warmup", str(opts.warmup), "--dtype", opts.dtype]
    # Both workers wait passively for OpenMP work, as `ijt-local train` does (see train/cli.py).
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{which} run failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="default")
    parser.add_argument("--lima", default=str(LIMA), help="LIMA jsonl (the first --examples rows are used)")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="timed steps (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="ijt-local's base dtype (the baseline is always float32); float32 isolates the "
                             "gain of the labelled-only chunked head from that of bf16 matmuls")
    parser.add_argument("--worker", choices=["ours", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        return worker(opts)

    from ijt_local.data.prepare import prepare

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "lima.jsonl"
        prepare("lima", data, from_path=opts.lima, limit=opts.examples)
        from ijt_local.train.base import base_folder

        base_folder(opts.base)  # dequantize/cache a GGUF base once, outside both timings
        started = time.time()
        baseline = spawn(opts, "baseline", data)
        ours = spawn(opts, "ours", data)
    result = {
        "bench": "train",
        "base": opts.base,
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "seq": opts.seq, "batch": opts.batch, "rank": opts.rank, "steps": opts.steps, "dtype_option": opts.dtype,
        "examples": opts.examples,
        "baseline": baseline,
        "ours": ours,
        "tokens_per_second_ratio": round(ours["tokens_per_second"] / baseline["tokens_per_second"], 3),
        "peak_rss_ratio": round(ours["peak_rss_mb"] / baseline["peak_rss_mb"], 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "wall_seconds": round(time.time() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
