"""The loss curve of a run: CSV and PNG, rebuilt from Trainer's log history (which checkpoints keep, so a
resumed run continues the same curve)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ijt_local.jsonl import write_atomic

COLUMNS = (
    "step",
    "epoch",
    "loss",
    "val_loss",
    "learning_rate",
    "grad_norm",
    "tokens_per_second",
    "num_input_tokens_seen",
)


def curve_rows(log_history: list[dict]) -> list[dict]:
    rows = []
    for entry in log_history:
        if "loss" in entry:
            rows.append({k: entry.get(k, "") for k in COLUMNS if k != "val_loss"} | {"val_loss": ""})
        elif "eval_loss" in entry:
            rows.append({"step": entry["step"], "epoch": entry.get("epoch", ""), "val_loss": entry["eval_loss"]})
    return rows


def epoch_means(rows: list[dict]) -> list[tuple[int, int, float]]:
    """(epoch, last step, mean train loss) per epoch: with length-grouped batches single steps are noisy
    (a batch of long answers has a different loss than one of short ones); epoch means compare like with
    like."""
    import math

    groups: dict[int, list[tuple[int, float]]] = {}
    for row in rows:
        if row.get("loss") not in ("", None) and row.get("epoch") not in ("", None):
            groups.setdefault(max(1, math.ceil(float(row["epoch"]) - 1e-9)), []).append(
                (int(row["step"]), float(row["loss"]))
            )
    return [
        (epoch, max(s for s, _ in items), sum(loss for _, loss in items) / len(items))
        for epoch, items in sorted(groups.items())
    ]


def write_curve_csv(path: Path, log_history: list[dict]) -> list[dict]:
    rows = curve_rows(log_history)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())
    return rows


def write_curve_png(path: Path, rows: list[dict], title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") not in ("", None)]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") not in ("", None)]
    figure, axis = plt.subplots(figsize=(7, 4))
    if train:
        axis.plot(*zip(*train), label="train", linewidth=1.2)
    means = epoch_means(rows)
    if means:
        axis.plot([m[1] for m in means], [m[2] for m in means], "s--", label="train, epoch mean")
    if val:
        axis.plot(*zip(*val), "o-", label="validation")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (response tokens)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, path)


def write_curve(out_dir: Path, log_history: list[dict], title: str = "") -> list[dict]:
    rows = write_curve_csv(out_dir / "loss_curve.csv", log_history)
    write_curve_png(out_dir / "loss_curve.png", rows, title)
    return rows
