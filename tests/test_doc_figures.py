"""Figures with one source: the measured numbers README.md and docs/ quote are checked against the files
they come from, so a rerun that changes a figure cannot leave a stale copy behind.

Sources: ijt_local/measured.toml (benchmarks, the judge's agreement), docs/replication/results.json and the
committed archives beside it (the laptop replication; its rule rows' rerun is in
laptop-run-rerun-progress.tar.xz until it lands in results.json), docs/compare-val/*.json (compare on the
val instructions). A doc quotes a figure rounded; a check passes when the source, rounded as the doc
rounds it, gives the same digits.
"""

from __future__ import annotations

import json
import re
import statistics
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from ijt_local.jsonl import read_jsonl
from ijt_local.measured import measured

ROOT = Path(__file__).resolve().parents[1]
REPLICATION = ROOT / "docs" / "replication"
RESULTS = json.loads((REPLICATION / "results.json").read_text(encoding="utf-8"))
COMPARE_VAL = json.loads((ROOT / "docs" / "compare-val" / "results.json").read_text(encoding="utf-8"))
COMPARE_VAL_BEFORE = json.loads(
    (ROOT / "docs" / "compare-val" / "results-before-batch-invariance.json").read_text(encoding="utf-8")
)
PAPERS_RULES = "eos,uniform,diversity"


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def flat(text: str) -> str:
    """The text with its line breaks as spaces, so a quoted sentence may wrap."""
    return " ".join(text.split())


def decimals(shown: str) -> int:
    return len(shown.split(".")[1]) if "." in shown else 0


def same(shown: str, value: float, scale: float = 1.0) -> bool:
    """`shown` (a number as a doc writes it) is `value` × `scale` rounded to the digits shown."""
    return f"{value * scale:.{decimals(shown)}f}" == f"{float(shown.replace(',', '')):.{decimals(shown)}f}"


def assert_shows(cell: str, *values: float, scale: float = 100.0, where: str = "") -> None:
    shown = re.findall(r"\d[\d,]*(?:\.\d+)?", cell)
    assert len(shown) == len(values), f"{where}: {cell!r} shows {shown}, its source has {len(values)} numbers"
    for text, value in zip(shown, values):
        assert same(text, value, scale), f"{where}: {cell!r} shows {text}, its source gives {value * scale:.4f}"


def table(text: str, header_start: str) -> dict[str, list[str]]:
    """A Markdown table's rows by their first cell, from the table whose header starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


# ---- the replication: results.json, and the rule rows' rerun until it lands there ---------------------------


@pytest.fixture(scope="module")
def rerun(tmp_path_factory) -> dict[str, dict]:
    """The paper's rules row (`rules`) and `rules-start` of the rule rows' rerun: stop and echo rates,
    and the 1.5B judge's position-free and chrf1's win rates as (mean, sd over the three references)."""
    if RESULTS.get("rule_sets", {}).get("rules") == PAPERS_RULES:  # the rerun has landed in results.json
        reference = RESULTS["reference_judge"]["table"]
        return {
            row: {
                "stop": (RESULTS["table"][row]["stop_rate"]["mean"],),
                "echo": (RESULTS["table"][row]["echo_rate"]["mean"],),
                "judge": spread(RESULTS["table"][row]["winrate_position_free"]),
                "chrf1": spread(reference[row]["winrate"]),
            }
            for row in ("rules", "rules-start")
        }
    archive = REPLICATION / "laptop-run-rerun-progress.tar.xz"
    assert archive.is_file(), "neither results.json nor a progress archive holds the rule rows' rerun"
    folder = tmp_path_factory.mktemp("rerun")
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    out = folder / "laptop"
    compare = json.loads((out / "compare" / "results.json").read_text())["models"]
    evaluate = json.loads((out / "stages" / "evaluate.json").read_text())
    assert evaluate["inputs"]["alpaca_models"].count("rules-start") == 1  # the rerun's lineup

    def judged(folder_name: str, row: str) -> tuple[float, float] | None:
        from ijt_local.eval.judge import summarize

        rates = []
        for seed in RESULTS["seeds"]:
            path = out / folder_name / "judgements" / f"{row}-vs-instruct-s{seed}.preferences.jsonl"
            if not path.is_file():
                return None
            rates.append(summarize(read_jsonl(path), SimpleNamespace(model=folder_name)))
        key = "position_free_win_rate" if folder_name == "winrate" else "win_rate"
        values = [rate[key] for rate in rates]
        return statistics.mean(values), statistics.stdev(values)

    return {
        row: {
            "stop": (compare[row]["metrics"]["stop_rate"],),
            "echo": (compare[row]["metrics"]["echo_rate"],),
            "judge": judged("winrate", row),
            "chrf1": judged("winrate-reference", row),
        }
        for row in ("rules", "rules-start")
    }


def spread(cell: dict) -> tuple[float, ...]:
    """(mean,) or (mean, sd): a results.json cell as a table shows it (no ± when it has one value)."""
    return (cell["mean"],) if cell["n"] == 1 else (cell["mean"], cell["std"])


def test_readme_results_table_is_results_json_and_the_rerun(rerun):
    rows = table(read("README.md"), "| model | stops at EOS |")
    reference = RESULTS["reference_judge"]["table"]
    for label, group in (("base", "base"), ("response-tuned", "response"), ("poetry only", "poetry")):
        stop, echo, judge, chrf1, paper = rows[label]
        cells = RESULTS["table"][group]
        assert_shows(stop, *spread(cells["stop_rate"]), where=f"README {label} stop")
        assert_shows(echo, *spread(cells["echo_rate"]), where=f"README {label} echo")
        assert_shows(judge, *spread(cells["winrate_position_free"]), where=f"README {label} 1.5B judge")
        assert_shows(chrf1, *spread(reference[group]["winrate"]), where=f"README {label} chrf1")
        expected = cells["paper_win_rate_vs_instruct"]
        assert_shows(paper, *(() if expected is None else (expected,)), scale=1, where=f"README {label} paper")
    stop, echo, judge, chrf1, paper = rows["base × rules (the paper's: eos, uniform, diversity)"]
    assert_shows(stop, *rerun["rules"]["stop"], where="README rules stop")
    assert_shows(echo, *rerun["rules"]["echo"], where="README rules echo")
    assert_shows(judge, *rerun["rules"]["judge"], where="README rules 1.5B judge")
    assert_shows(chrf1, *rerun["rules"]["chrf1"], where="README rules chrf1")
    assert_shows(paper, RESULTS["table"]["rules"]["paper_win_rate_vs_instruct"], scale=1, where="README paper")
    stop, echo, judge, chrf1, _ = rows['base × rules + `start` (ours; the earlier run\'s "rules")']
    assert_shows(stop, *rerun["rules-start"]["stop"], where="README rules-start stop")
    assert_shows(echo, *rerun["rules-start"]["echo"], where="README rules-start echo")
    if rerun["rules-start"]["judge"] is None:  # not judged yet: the cell quotes the earlier run's four rules
        assert "(earlier run)" in judge
        assert_shows(judge, *spread(RESULTS["table"]["rules"]["winrate_position_free"]), where="README earlier")
    else:
        assert_shows(judge, *rerun["rules-start"]["judge"], where="README rules-start 1.5B judge")
    assert_shows(chrf1, *rerun["rules-start"]["chrf1"], where="README rules-start chrf1")


def test_readme_prose_figures(rerun):
    text = flat(read("README.md"))
    before, after = re.search(r"ends on its own \((\d+) % → (\d+) %\)", text).groups()
    assert same(before, RESULTS["table"]["base"]["stop_rate"]["mean"], 100)
    assert same(after, rerun["rules"]["stop"][0], 100)
    base_echo, rules_echo = re.search(r"echoes fall from (\d+) % to (\d+) %", text).groups()
    assert same(base_echo, RESULTS["table"]["base"]["echo_rate"]["mean"], 100)
    assert same(rules_echo, rerun["rules"]["echo"][0], 100)
    assert same(re.search(r"answers \(echo (\d+) %\)", text).group(1), rerun["rules-start"]["echo"][0], 100)
    assert same(re.search(r"brings that to (\d+) %", text).group(1), rerun["rules-start"]["echo"][0], 100)
    agreement = RESULTS["reference_judge"]["agreement_with_gpt4"]["agreement"]
    assert same(re.search(r"agrees with GPT-4 on ([\d.]+) % of dev pairs", text).group(1), agreement, 100)
    assert "at any `--parallel` from 2 up" in text  # --parallel 1 takes the one-row path, which can differ


def test_the_judges_order_consistency_is_counted_over_every_pair_judged_both_ways():
    follows = RESULTS["judge"]["follows"]
    assert all(row["winrate_order_consistent"]["mean"] == 0 for row in RESULTS["table"].values() if "winrate" in row)
    text = flat(read("docs/evaluation.md"))
    assert f"0 of {follows['pairs']:,} for this judge" in text
    results_md = flat(read("docs/replication/results.md"))
    assert f"on **none** of the {follows['pairs']:,} pairs judged both ways" in results_md


def test_evaluation_position_bias_example_is_the_archives(tmp_path):
    with tarfile.open(REPLICATION / "laptop-run.tar.xz") as tar:
        tar.extractall(tmp_path, filter="data", members=[tar.getmember("laptop/stages/winrate.json")])
    base = json.loads((tmp_path / "laptop" / "stages" / "winrate.json").read_text())["winrate"]["instruct-s0"]["base"]
    bias, averaged, free = re.search(
        r"about −([\d.]+) log-odds here: ([\d.]+) % averaged is ([\d.]+) % position-free for the base model "
        r"against `instruct-s0`",
        flat(read("docs/evaluation.md")),
    ).groups()
    assert same(bias, -base["position_bias_logit"])
    assert same(averaged, base["win_rate"], 100) and same(free, base["position_free_win_rate"], 100)


def test_archive_sizes_are_the_files():
    megabytes = (REPLICATION / "laptop-run.tar.xz").stat().st_size / 1e6
    shown = re.search(r"([\d.]+) MB for the committed three-seed run", flat(read("docs/replication.md"))).group(1)
    assert same(shown, megabytes), f"docs/replication.md says {shown} MB, the archive is {megabytes:.2f} MB"
    shown = re.search(r"\(laptop-run\.tar\.xz\) \(([\d.]+) MB\)", read("docs/replication/results.md")).group(1)
    assert same(shown, megabytes), f"docs/replication/results.md says {shown} MB, the archive is {megabytes:.2f} MB"


# ---- compare on the val instructions ----------------------------------------------------------------------


def test_evaluation_compare_table_is_compare_val():
    rows = table(read("docs/evaluation.md"), "| model | stop_rate |")
    models = COMPARE_VAL["models"]
    labels = {
        "gemma-3-270m base (`default`)": "base",
        "base × rules (`default+poe`: eos, uniform, diversity)": "poe",
        "SmolLM2-135M-Instruct": "instruct",
    }
    assert set(rows) == set(labels)
    for label, name in labels.items():
        metrics = models[name]["metrics"]
        keys = ("stop_rate", "role_leak_rate", "echo_rate", "repetition_rate", "mean_tokens")
        for cell, key in zip(rows[label], keys):
            assert_shows(cell, metrics[key], scale=1, where=f"evaluation.md {label} {key}")
    assert models["poe"]["spec"] == "default+poe" and models["poe"]["model"]["rules"] == "eos,uniform,diversity"
    text = flat(read("docs/evaluation.md"))
    totals = re.search(r"the same to the token \(([\d,]+) and ([\d,]+) tokens", text).groups()
    assert [int(total.replace(",", "")) for total in totals] == [
        models[name]["generation"]["tokens"] for name in ("base", "instruct")
    ]


def test_before_batch_invariance_figures_are_that_runs():
    before = {name: model for name, model in COMPARE_VAL_BEFORE["models"].items()}
    text = flat(read("docs/evaluation.md"))
    leak, echo, repetition = re.search(r"gave base ([\d.]+) / ([\d.]+) / ([\d.]+)", text).groups()
    base = before["base"]["metrics"]
    assert same(leak, base["role_leak_rate"]) and same(echo, base["echo_rate"])
    assert same(repetition, base["repetition_rate"])
    echo, repetition, tokens = re.search(
        r"base × all four rules ([\d.]+) echo, ([\d.]+) repetition, (\d+) tokens", text
    ).groups()
    poe = before["poe"]["metrics"]
    assert same(echo, poe["echo_rate"]) and same(repetition, poe["repetition_rate"])
    assert same(tokens, poe["mean_tokens"])
    rules = flat(read("docs/rules.md"))
    total, echo, per_reply = re.search(
        r"the same ([\d,]+) tokens and metrics \(echo ([\d.]+), (\d+) tokens a reply\)", rules
    ).groups()
    assert int(total.replace(",", "")) == before["poe"]["generation"]["tokens"]
    assert same(echo, poe["echo_rate"]) and same(per_reply, poe["mean_tokens"])


# ---- benchmarks: ijt_local/measured.toml ------------------------------------------------------------------

PERFORMANCE = measured()["performance"]


def speedups(run: dict) -> tuple[float, float]:
    return run["width_16"] / run["width_1"], run["width_32"] / run["width_1"]


def test_readme_performance_at_a_glance_is_measured_toml():
    rows = table(read("README.md"), "| what | command | result |")
    poe = PERFORMANCE["poe_decode"]
    command, result = rows["rule expert's cost per token"]
    assert command == f"`{poe['command']}`" and same(re.search(r"PoE ([\d.]+)×", result).group(1), poe["ratio"])
    for label, run in (
        ("batched PoE generation, idle machine, before batch-invariant decoding", PERFORMANCE["batched_idle"]),
        ("the same with batch-invariant decoding, busy machine (one thread left)", PERFORMANCE["batched_busy"]),
    ):
        command, result = rows[label]
        assert command == f"`{run['command']}`", label
        shown = re.findall(r"([\d.]+)× \(width (\d+)\)", result)
        assert [width for _, width in shown] == ["16", "32"], label
        for (text, _), value in zip(shown, speedups(run)):
            assert same(text, value), f"README {label}: {text}× where measured.toml gives {value:.3f}"
    training = PERFORMANCE["training"]
    command, result = rows["LoRA training"]
    assert command == f"`{training['command']}`"
    speed, memory = re.search(r"([\d.]+)× a naive .* at ([\d.]+)× its peak RSS", result).groups()
    assert same(speed, training["tokens_per_second_ratio"]) and same(memory, training["peak_rss_ratio"])


def test_performance_md_quotes_measured_toml():
    text = flat(read("docs/performance.md"))
    poe = PERFORMANCE["poe_decode"]
    assert (
        f"plain {poe['plain_tokens_per_second']} tok/s, PoE {poe['poe_tokens_per_second']} tok/s, "
        f"**ratio {poe['ratio']}**" in text
    )
    busy16, busy32 = speedups(PERFORMANCE["batched_busy"])
    idle16, idle32 = speedups(PERFORMANCE["batched_idle"])
    assert (
        f"PoE over the file is {busy16:.2f}× single-stream at width 16 and {busy32:.2f}× at 32 "
        f"({idle16:.2f}× and {idle32:.2f}× before, idle)" in text
    )
    idle = PERFORMANCE["batched_idle"]
    assert (
        f"PoE went from {idle['width_1']} tok/s one prompt at a time to {idle['width_32']} at width 32 "
        f"(**{idle32:.2f}×**; {idle['width_16']} at 16, {idle16:.2f}×)" in text
    )
    rows = table(read("docs/performance.md"), "| width | run: plain tok/s | run: PoE tok/s | run: PoE, padding off")
    for width in (1, 16, 32):
        assert same(rows[str(width)][1], PERFORMANCE["batched_busy"][f"width_{width}"]), width
    rows = table(read("docs/performance.md"), "| width | run: plain tok/s | run: PoE tok/s | limit:")
    for width in (1, 16, 32):
        assert same(rows[str(width)][1].strip("*"), PERFORMANCE["batched_idle"][f"width_{width}"]), width
    training = PERFORMANCE["training"]
    assert (
        f"{training['tokens_per_second']} vs {training['baseline_tokens_per_second']} tok/s "
        f"(`tokens_per_second_ratio` **{training['tokens_per_second_ratio']}×**" in text
    )
    assert f"(`peak_rss_ratio` **{training['peak_rss_ratio']:.2f}×**)" in text
    assert f"peak RSS {training['peak_rss_mb']:,} vs {training['baseline_peak_rss_mb']:,} MB" in text


def test_training_ratios_are_their_medians():
    training = PERFORMANCE["training"]
    assert same(
        str(training["tokens_per_second_ratio"]), training["tokens_per_second"] / training["baseline_tokens_per_second"]
    )
    assert same(f"{training['peak_rss_ratio']:.2f}", training["peak_rss_mb"] / training["baseline_peak_rss_mb"])


def test_parity_points_at_the_figures_it_names():
    parity = read("docs/parity.md")
    assert "README's performance section" not in parity
    assert "[performance.md](performance.md#parity)" in parity
    section = read("docs/performance.md").split("## Parity", 1)[1]
    assert "tokenize 615 mixed texts identically" in flat(section) and "34.28 vs 34.45" in section
