"""Training throughput and memory: ijt-local's LoRA trainer vs a naive transformers Trainer + peft loop.

Both train the same base on the same tokenized LIMA subset (instruction variant, loss on responses), at the
same sequence length, batch size, LoRA rank/targets and number of steps, each in its own process so peak
RSS is its own. The baseline is what one writes first: float32 weights, every batch padded to the maximum
length, the model's own forward with `labels` (full-vocabulary logits at every position). ijt-local uses
its defaults: base weights in bf16 where the CPU multiplies bf16 natively, length-grouped batches padded to
the longest example, and the output head run only on labelled positions, in chunks.

The two sides run alternately for --rounds rounds (baseline first in odd rounds, ours first in even ones),
so a machine whose load drifts slows both alike; the JSON line gives each side's median over rounds and
the ratio of the medians. Tokens/s counts real (non-padding) input tokens over the timed steps (the first
--warmup steps are not timed). Each worker also counts the matmul FLOPs of its last warm-up step (torch's
FlopCounterMode); a short torch matmul benchmark at the model's shapes, before and after the rounds, gives
the machine's bf16 and fp32 peak (the better of the two), so the line says what share of its peak each
side reaches. The last line printed is one JSON object. `--against torch-dropout` makes the baseline side
ijt-local's own trainer with peft's nn.Dropout masks, an A/B of the lane dropout (train/dropout.py).

    python scripts/bench_train.py [--base default] [--seq 256] [--batch 4] [--rank 16] [--steps 3] [--rounds 3]
        [--against naive|torch-dropout]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench_harness import child_json, median, rounds

from ijt_local.data.home import shared_data_path

REPO = Path(__file__).resolve().parent.parent
LIMA = shared_data_path("lima/lima_data.jsonl")


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024 if sys.platform != "darwin" else peak / 2**20, 1)


def step_timer(warmup: int):
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time and non-padding input tokens of each optimizer step; matmul FLOPs of the last warm-up
        step (the first one warms up allocators and caches)."""

        def __init__(self):
            self.steps, self.warmup_flops = [], 0
            self._counter = None

        def on_step_begin(self, args, state, control, **kwargs):
            if len(self.steps) == warmup - 1:
                self._counter = FlopCounterMode(display=False)
                self._counter.__enter__()
            self._start = (time.perf_counter(), state.num_input_tokens_seen)

        def on_step_end(self, args, state, control, **kwargs):
            start, seen = self._start
            # Trainer counts a step's tokens when it fetches the batch, after on_step_begin.
            self.steps.append((time.perf_counter() - start, state.num_input_tokens_seen - seen))
            if self._counter is not None:
                self._counter.__exit__(None, None, None)
                self.warmup_flops += self._counter.get_total_flops()
                self._counter = None

    return StepTimer()


def summarize(timer, warmup: int) -> dict:
    timed = timer.steps[warmup:]
    seconds = sum(s for s, _ in timed)
    tokens = sum(t for _, t in timed)
    warmup_tokens = timer.steps[warmup - 1][1] if warmup else 0
    flops_per_token = timer.warmup_flops / warmup_tokens if warmup_tokens else None
    return {
        "timed_steps": len(timed),
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 2) if seconds else None,
        "step_seconds": [round(s, 2) for s, _ in timer.steps],
        "matmul_gflop_per_token": round(flops_per_token / 1e9, 3) if flops_per_token else None,
    }


def run_ours(opts, data: Path, out: Path, lane_dropout: bool = True) -> dict:
    from ijt_local.train.lora import TrainConfig, train_lora

    timer = step_timer(opts.warmup)
    config = TrainConfig(
        base=opts.base,
        data=str(data),
        out=str(out),
        max_seq_len=opts.seq,
        batch_size=opts.batch,
        rank=opts.rank,
        alpha=2 * opts.rank,
        max_steps=opts.steps + opts.warmup,
        save_steps=10**6,
        seed=0,
        progress=False,
        dtype=opts.dtype,
        loss_chunk=opts.loss_chunk or None,
        lane_dropout=lane_dropout,
    )
    manifest = train_lora(config, callbacks=[timer])
    return {
        **summarize(timer, opts.warmup),
        "dtype": manifest["dtype"],
        "peak_rss_mb": peak_rss_mb(),
    }


def run_baseline(opts, data: Path, out: Path) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from ijt_local.train.base import base_folder
    from ijt_local.train.data import IGNORE, tokenize_file
    from ijt_local.train.lora import DEFAULT_TARGETS

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
            "attention_mask": torch.tensor(
                [[1] * len(e["input_ids"]) + [0] * (n - len(e["input_ids"])) for e in batch]
            ),
        }

    model = get_peft_model(
        model,
        LoraConfig(
            r=opts.rank,
            lora_alpha=2 * opts.rank,
            lora_dropout=0.05,
            target_modules=list(DEFAULT_TARGETS),
            task_type="CAUSAL_LM",
        ),
    )
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=opts.batch,
        max_steps=opts.steps + opts.warmup,
        learning_rate=2e-4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    timer = step_timer(opts.warmup)
    Trainer(model=model, args=args, train_dataset=examples, data_collator=pad_to_max_length, callbacks=[timer]).train()
    return {**summarize(timer, opts.warmup), "dtype": "float32", "peak_rss_mb": peak_rss_mb()}


def matmul_peak(opts) -> dict:
    """GFLOP/s of torch matmuls at the model's shapes (a batch of tokens through each projection, and one
    256-row chunk through the output head), bf16 (where the CPU has it natively) and fp32; best of a few
    timings each."""
    import torch
    from transformers import AutoConfig

    from ijt_local.train.base import base_folder

    config = AutoConfig.from_pretrained(base_folder(opts.base)[0])
    config = getattr(config, "text_config", config)
    tokens, hidden = opts.batch * opts.seq, config.hidden_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    shapes = {
        "q_proj": (tokens, hidden, q),
        "kv_proj": (tokens, hidden, kv),
        "o_proj": (tokens, q, hidden),
        "up_proj": (tokens, hidden, config.intermediate_size),
        "down_proj": (tokens, config.intermediate_size, hidden),
        "head_chunk": (256, hidden, config.vocab_size),
    }
    from ijt_local.train.device import cpu_has_fast_bfloat16

    # Where bf16 is emulated (no AVX512-BF16 or AMX) a bf16 matmul runs at a few percent of fp32's speed: the
    # head-chunk shape alone took 22 minutes on an AVX2-only EPYC. Training picks fp32 there, so the peak is fp32's.
    timed_bf16 = cpu_has_fast_bfloat16() or opts.dtype == "bfloat16"  # asked for, it is timed anyway
    dtypes = (torch.bfloat16, torch.float32) if timed_bf16 else (torch.float32,)
    result = {}
    for dtype in dtypes:
        rates = {}
        for name, (m, k, n) in shapes.items():
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            a @ b  # warm-up
            best = float("inf")
            for _ in range(3):
                repeats, started = 0, time.perf_counter()
                while repeats < 2 or time.perf_counter() - started < 0.3:
                    a @ b
                    repeats += 1
                best = min(best, (time.perf_counter() - started) / repeats)
            rates[name] = round(2 * m * k * n / best / 1e9, 1)
        result[str(dtype).replace("torch.", "")] = {"peak_gflops": max(rates.values()), "by_shape": rates}
    return result


def worker(opts) -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    if opts.worker == "peak":
        result = matmul_peak(opts)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            if opts.worker == "ours":
                result = run_ours(opts, Path(opts.data), out)
            elif opts.against == "torch-dropout":
                result = run_ours(opts, Path(opts.data), out, lane_dropout=False)
            else:
                result = run_baseline(opts, Path(opts.data), out)
    print(json.dumps(result))


def spawn(opts, which: str, data: Path) -> dict:
    command = [
        __file__,
        "--worker",
        which,
        "--data",
        str(data),
        "--base",
        opts.base,
        "--seq",
        str(opts.seq),
        "--batch",
        str(opts.batch),
        "--rank",
        str(opts.rank),
        "--steps",
        str(opts.steps),
        "--warmup",
        str(opts.warmup),
        "--dtype",
        opts.dtype,
        "--loss-chunk",
        str(opts.loss_chunk),
        "--against",
        opts.against,
    ]
    # Both workers wait passively for OpenMP work, as `ijt-local train` does (see train/cli.py).
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    load_before = os.getloadavg()[0]
    result = child_json(command, f"{which} run", env=env)
    if which != "peak":
        result["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def side_summary(runs: list[dict], flops_peak: float) -> dict:
    speeds = [run["tokens_per_second"] for run in runs]
    gflop_per_token = runs[0]["matmul_gflop_per_token"]
    achieved = gflop_per_token * median(speeds) if gflop_per_token else None
    return {
        "tokens_per_second_median": median(speeds, 3),
        "tokens_per_second_rounds": speeds,
        "peak_rss_mb_median": median([run["peak_rss_mb"] for run in runs], 3),
        "dtype": runs[0]["dtype"],
        "matmul_gflop_per_token": gflop_per_token,
        "matmul_gflops_achieved": round(achieved, 1) if achieved else None,
        "share_of_matmul_peak": round(achieved / flops_peak, 3) if achieved else None,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="default")
    parser.add_argument("--lima", default=str(LIMA), help="LIMA jsonl (the first --examples rows are used)")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 1)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/ours rounds")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="ijt-local's base dtype (the baseline is always float32); float32 isolates the "
        "gain of the labelled-only chunked head from that of bf16 matmuls",
    )
    parser.add_argument(
        "--loss-chunk", type=int, default=0, help="ijt-local's output-head chunk in rows (0: the trainer's default)"
    )
    parser.add_argument(
        "--against",
        default="naive",
        choices=["naive", "torch-dropout"],
        help="the baseline side: the naive Trainer + peft loop, or ijt-local's trainer with peft's "
        "nn.Dropout instead of the 16-bit lane masks (an A/B of train/dropout.py)",
    )
    parser.add_argument("--worker", choices=["ours", "baseline", "peak"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        return worker(opts)

    from ijt_local.data.prepare import prepare
    from ijt_local.train.lora import package_versions

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "lima.jsonl"
        prepare("lima", data, from_path=opts.lima, limit=opts.examples)
        from ijt_local.train.base import base_folder

        base_folder(opts.base)  # dequantize/cache a GGUF base once, outside both timings
        started, load_start = time.time(), os.getloadavg()[0]
        peaks = [spawn(opts, "peak", data)]
        runs = rounds(
            opts.rounds, {which: lambda which=which: spawn(opts, which, data) for which in ("baseline", "ours")}
        )
        peaks.append(spawn(opts, "peak", data))
    # The machine's peak is the best it showed: once before the rounds and once after.
    peak = {
        dtype: {
            "by_shape": {name: max(p[dtype]["by_shape"][name] for p in peaks) for name in peaks[0][dtype]["by_shape"]}
        }
        for dtype in peaks[0]
    }
    for entry in peak.values():
        entry["peak_gflops"] = max(entry["by_shape"].values())
    baseline = side_summary(runs["baseline"], peak[runs["baseline"][0]["dtype"]]["peak_gflops"])
    ours = side_summary(runs["ours"], peak[runs["ours"][0]["dtype"]]["peak_gflops"])
    per_round = [o["tokens_per_second"] / b["tokens_per_second"] for o, b in zip(runs["ours"], runs["baseline"])]
    result = {
        "bench": "train",
        "base": opts.base,
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        "seq": opts.seq,
        "batch": opts.batch,
        "rank": opts.rank,
        "steps": opts.steps,
        "warmup": opts.warmup,
        "rounds": opts.rounds,
        "dtype_option": opts.dtype,
        "loss_chunk_option": opts.loss_chunk,
        "against": opts.against,
        "examples": opts.examples,
        "tokens_per_second_ratio": round(ours["tokens_per_second_median"] / baseline["tokens_per_second_median"], 3),
        "tokens_per_second_ratio_rounds": [round(r, 3) for r in per_round],
        "peak_rss_ratio": round(ours["peak_rss_mb_median"] / baseline["peak_rss_mb_median"], 3),
        "matmul_peak_gflops": {dtype: peak[dtype]["peak_gflops"] for dtype in peak},
        "matmul_peak_by_shape": {dtype: peak[dtype]["by_shape"] for dtype in peak},
        "baseline": baseline,
        "ours": ours,
        "versions": package_versions(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        "load_average_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "wall_seconds": round(time.time() - started, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
