"""Data-parallel training for real: torchrun starts 2 CPU processes (gloo) on a tiny llama, the
transformers Trainer runs DDP, and the result is checked against one process with the same step size."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from ijt_local.train.lora import TrainConfig, train_lora  # noqa: E402

ROWS = [
    (f"Question {i}: name thing number {i}.", f"Thing {i} is {'a long answer ' * (i % 4 + 1)}done.") for i in range(16)
]
SETTINGS = {
    "epochs": "2",
    "lr": "2e-3",
    "rank": "8",
    "alpha": "16",
    "dropout": "0",
    "max-seq-len": "64",
    "batch-size": "4",
    "seed": "0",
    "device": "cpu",
    "dtype": "float32",
    "save-steps": "4",
}


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from tiny_models import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in ROWS))
    return path


def torchrun(processes: int, base, data, out, **overrides) -> subprocess.CompletedProcess:
    options = {**SETTINGS, **overrides}
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "ijt_local.train",
        "--base",
        str(base),
        "--data",
        str(data),
        "--out",
        str(out),
    ]
    for key, value in options.items():
        args += [f"--{key}"] if value is True else [f"--{key}", value]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCHELASTIC_ERROR_FILE": ""}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


def curve(out) -> list[float]:
    with (out / "loss_curve.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle) if row["loss"]]


def test_two_processes_train_like_one_with_the_same_step(tiny_llama, data, tmp_path):
    torch.set_num_threads(1)
    single = train_lora(
        TrainConfig(
            base=str(tiny_llama),
            data=str(data),
            out=str(tmp_path / "single"),
            epochs=2,
            lr=2e-3,
            rank=8,
            alpha=16,
            dropout=0.0,
            max_seq_len=64,
            batch_size=4,
            seed=0,
            device="cpu",
            dtype="float32",
            save_steps=4,
            progress=False,
        )
    )

    run = torchrun(2, tiny_llama, data, tmp_path / "ddp")
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "ddp"
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["processes"] == {"world_size": 2, "backend": "gloo", "batch_per_process": 2, "effective_batch": 4}
    assert manifest["results"]["steps"] == single["results"]["steps"] == 8
    assert manifest["results"]["tokens_seen"] == single["results"]["tokens_seen"]  # all rows, counted once
    assert sorted(p.name for p in out.glob("adapter_*")) == ["adapter_config.json", "adapter_model.safetensors"]
    assert not list(out.glob(".adapter.tmp-*"))
    # same rows per step, split over two processes: the same losses up to float summation order
    assert curve(out) == pytest.approx(curve(tmp_path / "single"), rel=1e-5)

    # --resume under the launcher: as if killed after checkpoint 4 (the last checkpoint and outputs gone)
    shutil.rmtree(out / "checkpoints" / "checkpoint-8")
    for name in ("adapter_model.safetensors", "adapter_config.json", "run.json", "loss_curve.csv"):
        (out / name).unlink()
    resumed = torchrun(2, tiny_llama, data, out, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = json.loads((out / "run.json").read_text())
    assert again["results"]["resumed_from"].endswith("checkpoint-4")
    assert curve(out) == pytest.approx(curve(tmp_path / "single"), rel=1e-5)


def test_a_batch_the_processes_cannot_share_is_one_line_from_rank_zero(tiny_llama, data, tmp_path):
    run = torchrun(2, tiny_llama, data, tmp_path / "odd", **{"batch-size": "3"})
    assert run.returncode != 0
    ours = [line for line in run.stderr.splitlines() if line.startswith("Error: ")]
    assert ours == [
        "Error: --batch-size 3 does not split evenly over 2 processes: pass a multiple of 2 "
        "(each process takes batch-size / processes rows)"
    ]
    # the launcher reports a failed worker with its own traceback (ChildFailedError); the workers add none
    assert run.stderr.count("Traceback") == run.stderr.count("ChildFailedError:") == 1
    assert not (tmp_path / "odd").exists()
