"""The replication's report: OUT/results.json (a row per model, spread over seeds, the paper's numbers
beside) built from the stage records and the files the stages wrote, and OUT/results.md rendered from it
(markdown.py). A run folder restored from its archive rebuilds both without any model."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from ..jsonl import read_jsonl, write_atomic
from .budgets import ADAPTER_ROUTE, ALPACA_SEED
from .lineup import table_row
from .markdown import render_replication

# AlpacaEval win rates against the same base instruction-tuned on LIMA, Llama-2-7B (paper, Table 1/§6).
PAPER_WIN_RATES = {"response": 43.3, "poetry": 23.7, "rules": 24.4}


def write_report(
    run, evaluation: dict, training: dict, judged: dict | None, reference_judged: dict | None = None
) -> dict:
    """`run` is a stages.Replication; `evaluation`, `training`, `judged` and `reference_judged` (the
    winrate-reference stage) are its stage records."""
    rows = {}  # group -> one dict of metrics per model (seed)
    for name in run.lineup.model_specs():
        metrics = dict(evaluation["compare"][name]["metrics"])
        metrics["ifeval_loose_prompt"] = evaluation["ifeval"][name]["prompt_level_loose"]
        metrics["ifeval_loose_no_echo"] = evaluation["ifeval"][name].get("prompt_level_loose_no_echo")
        metrics["ranking_accuracy"] = evaluation["ranking"][name]["ranking_accuracy"]
        rows.setdefault(table_row(name), []).append(metrics)
    judged_rows = winrate_rows(judged)
    table = {}
    for group, per_seed in rows.items():
        cells = {**spread_cells(per_seed), **spread_cells(judged_rows.get(group, []))}
        cells["paper_win_rate_vs_instruct"] = PAPER_WIN_RATES.get(group)
        table[group] = cells
    judge = judge_summary(judged)
    if judge:
        judge["follows"] = judge_follows(run.out, judged)
    reference_judge = judge_summary(reference_judged)
    if reference_judge:
        reference_judge["reference_answers"] = reference_judged["reference_answers"]
        reference_judge["table"] = {
            group: {**spread_cells(per_seed), "paper_win_rate_vs_instruct": PAPER_WIN_RATES.get(group)}
            for group, per_seed in winrate_rows(reference_judged, run.out, "winrate-reference").items()
        }
        reference_judge["follows"] = judge_follows(run.out, reference_judged, "winrate-reference")
    result = {
        "budget": run.options.budget,
        "base": run.options.base,
        "seeds": run.lineup.seed_list,
        "style": style(run),
        "alpaca_sample": {"prompts": run.budget.alpaca_prompts, "seed": ALPACA_SEED},
        "adapter_route": ADAPTER_ROUTE,
        "models": run.lineup.model_specs(),
        "rule_sets": run.lineup.rule_sets(),
        "table": table,
        "training": training["runs"],
        "training_data": training_data(run),
        "command": command_line(),
        "stage_seconds": round(run.folder.stage_seconds(), 1),
        "judge": judge,
        **({"reference_judge": reference_judge} if reference_judge else {}),
    }
    result = rounded(result)
    write_atomic(run.out / "results.json", json.dumps(result, indent=1))
    write_atomic(run.out / "results.md", render_replication(result))
    return result


PUBLISHED_DIGITS = 6  # decimals kept in results.json: past these, sums differ with the CPU's SIMD width


def rounded(value, digits: int = PUBLISHED_DIGITS):
    """`value` (JSON-like) with every float rounded to `digits` decimals, so a report rebuilt on another CPU
    (AVX2 against AVX-512 numpy sums differ in the 16th digit) is the same file."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item, digits) for item in value]
    return value


def winrate_rows(judged: dict | None, out: Path | None = None, folder: str | None = None) -> dict[str, list[dict]]:
    """Table row -> one dict of win-rate figures per (model, reference) pair of a winrate stage's record.
    With the stage's folder under `out`, also `winrate_verdicts`: the share of instructions on which the
    judge's order-averaged preference names the reply (ties and identical replies count half), read from
    its preferences files: a soft judge's mean probability stays near 50 % however often it decides."""
    rows: dict[str, list[dict]] = {}
    for ref, results in (judged["winrate"] if judged else {}).items():
        for name, summary in results.items():
            verdicts = {}
            if folder is not None:
                path = out / folder / "judgements" / f"{name}-vs-{ref}.preferences.jsonl"
                preferences = [row["preference"] for row in read_jsonl(path) if row["preference"] is not None]
                verdicts["winrate_verdicts"] = (
                    statistics.mean((p > 0.5) + 0.5 * (p == 0.5) for p in preferences) if preferences else None
                )
            rows.setdefault(table_row(name), []).append(
                {
                    **verdicts,
                    "winrate": summary["win_rate"],
                    "winrate_lc": summary.get("length_controlled_win_rate"),
                    "winrate_se": summary.get("standard_error"),
                    "winrate_lc_se": summary.get("length_controlled_standard_error"),
                    "winrate_order_consistent": summary.get("order_consistent"),
                    "winrate_position_free": summary.get("position_free_win_rate"),
                    "winrate_position_free_se": summary.get("position_free_standard_error"),
                }
            )
    return rows


def command_line() -> str:
    """How this run was started, as one would type it again."""
    if Path(sys.argv[0]).name in ("ijt-local", "__main__.py"):  # the verb, or python -m ijt_local
        return " ".join(["ijt-local", *sys.argv[1:]])
    return " ".join(sys.argv)  # scripts/replicate.py ...


def spread_cells(per_seed: list[dict]) -> dict:
    """Per metric: mean, standard deviation and count over the seeds (or pairs) that have a number."""
    cells = {}
    for key in per_seed[0] if per_seed else ():
        values = [m[key] for m in per_seed if isinstance(m.get(key), (int, float))]
        if values:
            cells[key] = {
                "mean": statistics.mean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n": len(values),
            }
    return cells


def judge_summary(judged: dict | None) -> dict | None:
    """Who judged, and how far that judge can be trusted: its measured agreement with GPT-4 if known."""
    if not judged:
        return None
    some = next((summary for results in judged["winrate"].values() for summary in results.values()), {})
    return {
        "model": judged["judge"],
        "references": list(judged["winrate"]),
        "agreement_with_gpt4": some.get("judge_agreement_with_gpt4"),
        "note": some.get("note"),
    }


def judge_follows(out, judged: dict, folder: str = "winrate") -> dict:
    """What the judge's preferences follow (ijt_local/eval/judge_signals.py): correlations over every
    judged pair, and per row the position-free win rate of its echoing replies and of the others, and
    over its pairs whose two replies repeat about equally."""
    from ..eval.judge_signals import at_equal_repetition, echo_split, preference_correlates

    def replies(name: str) -> dict[str, str]:
        rows = read_jsonl(out / "compare-alpaca" / "generations" / f"{name}.jsonl")
        return {row["instruction"]: row["output"] for row in rows}

    pairs: dict[str, list] = {}  # table row -> (preference row, reply, reference reply)
    for ref, results in judged["winrate"].items():
        reference = replies(ref)
        for name in results:
            reply = replies(name)
            rows = read_jsonl(out / folder / "judgements" / f"{name}-vs-{ref}.preferences.jsonl")
            pairs.setdefault(table_row(name), []).extend(
                (row, reply[row["instruction"]], reference[row["instruction"]]) for row in rows
            )
    everything = [pair for group in pairs.values() for pair in group]
    return preference_correlates(everything) | {
        "echo_split": {group: echo_split(group_pairs) for group, group_pairs in pairs.items()},
        "equal_repetition": {group: at_equal_repetition(group_pairs) for group, group_pairs in pairs.items()},
    }


def style(run) -> dict:
    """Per style model, per instruction domain: the share of replies that are poems and that end with a
    GSM8K answer line (ijt_local/eval/style.py), over its replies to the AlpacaEval sample and the
    style probe."""
    from ..eval.style import style_rates

    def replies(folder: str, name: str) -> list[dict]:
        path = run.out / folder / "generations" / f"{name}.jsonl"
        return read_jsonl(path) if path.exists() else []  # no style probe when the sample takes all 805

    return {
        name: style_rates(replies("compare-alpaca", name) + replies("compare-style", name))
        for name in run.lineup.style_models()
    }


def training_data(run) -> dict:
    """Per training set: rows kept, source rows read to find them, and how many `train` truncated."""
    selection = json.loads((run.folder.stages / "data.json").read_text())["selection"]
    sources = {"instruct": "lima", "response": "lima"}
    summary = {}
    for name in run.lineup.training_sets():
        seeds = [
            json.loads((run.out / "adapters" / f"{name}-s{seed}" / "run.json").read_text())["data"]
            for seed in run.lineup.seed_list
        ]
        summary[name] = {
            **selection[sources.get(name, name)],
            "max_seq_len": run.budget.max_seq_len,
            "truncated": max(data["truncated"] for data in seeds),
            "tokens": seeds[0]["tokens"],
        }
    return summary
