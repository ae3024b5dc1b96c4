"""The replication's stage bookkeeping: a finished stage is never redone, an interrupted one keeps its time."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ijt_local.errors import UserError
from ijt_local.replicate import budgets, run_folder
from ijt_local.replicate.markdown import style_markdown
from ijt_local.replicate.report import spread_cells
from ijt_local.replicate.stages import Options, Replication

ROOT = Path(__file__).resolve().parents[1]


def make_run(out: Path, budget="smoke", seeds=1, data_root=None):
    return Replication(Options(out=out, budget=budget, data_root=data_root or out, seeds=seeds))


def test_interrupted_stage_keeps_its_time_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder, "CLOCK_TICK", 0.05)
    calls = []

    def interrupted():
        calls.append("first")
        time.sleep(0.3)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_run(tmp_path).stage("train", interrupted)
    stages = tmp_path / "stages"
    assert not (stages / "train.json").exists()
    spent_first = json.loads((stages / "train.partial.json").read_text())["seconds"]
    assert 0.3 <= spent_first < 30

    result = make_run(tmp_path).stage("train", lambda: calls.append("second") or {"adapters": 4})
    assert result["adapters"] == 4 and spent_first <= result["seconds"] < spent_first + 30
    assert not (stages / "train.partial.json").exists()
    assert json.loads((stages / "train.json").read_text()) == result

    again = make_run(tmp_path).stage("train", lambda: calls.append("third") or {})
    assert again == result and calls == ["first", "second"]


def test_stage_seconds_sum_finished_stages_only(tmp_path):
    run = make_run(tmp_path)
    (tmp_path / "stages" / "data.json").write_text(json.dumps({"seconds": 60.0}))
    (tmp_path / "stages" / "train.json").write_text(json.dumps({"seconds": 1500.5}))
    (tmp_path / "stages" / "evaluate.partial.json").write_text(json.dumps({"seconds": 900.0}))
    assert run.folder.stage_seconds() == 1560.5


def test_more_seeds_rerun_the_stages_they_change_and_keep_earlier_time(tmp_path):
    calls = []
    make_run(tmp_path, seeds=1).stage("data", lambda: calls.append("data") or {})
    first = make_run(tmp_path, seeds=1).stage("train", lambda: calls.append("train-1") or {"runs": 1})
    marker = tmp_path / "stages" / "train.json"
    marker.write_text(json.dumps(first | {"seconds": 600.0}))  # as if seed 0 had taken ten minutes

    two = make_run(tmp_path, seeds=2)
    assert two.stage("data", lambda: calls.append("data-again") or {})["inputs"] == {}  # seeds don't touch data

    def interrupted():
        calls.append("train-2-interrupted")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        two.stage("train", interrupted)
    second = two.stage("train", lambda: calls.append("train-2") or {"runs": 2})
    # the ten minutes count once, though both the marker and the interrupted rerun's partial hold them
    assert second["runs"] == 2 and second["inputs"] == {"seeds": 2} and 600.0 <= second["seconds"] < 630
    assert make_run(tmp_path, seeds=2).stage("train", lambda: calls.append("train-3") or {}) == second
    assert calls == ["data", "train-1", "train-2-interrupted", "train-2"]


def test_every_seed_is_judged_against_the_instruction_tuned_model_of_its_seed(tmp_path):
    # the paper's pairing: tuned seed K against instruct seed K; base and the rules against every seed's
    run = make_run(tmp_path, budget="laptop", seeds=3)
    pairs = run.lineup.judged_pairs()
    assert list(pairs) == ["instruct-s0", "instruct-s1", "instruct-s2"]
    assert pairs["instruct-s1"] == [
        "base",
        "rules",
        "response-s1",
        "poetry-s1",
        "gsm8k-s1",
        "rules-no-eos",
        "rules-no-uniform",
        "rules-no-diversity",
        "rules-start",
    ]
    specs = run.lineup.model_specs()
    # the paper's headline rules run and its ablations have no `start`; rules-start (ours) adds it
    assert specs["rules"].endswith("+poe:eos,uniform,diversity") and specs["rules-no-eos"].endswith(
        ":uniform,diversity"
    )
    assert specs["rules-start"].endswith(
        "+poe:eos,uniform,diversity,start"
    )  # every judged model and reference has AlpacaEval replies from evaluate
    assert all(name in specs for ref, names in pairs.items() for name in [ref, *names])
    assert run.stage_inputs("evaluate")["alpaca_models"] == list(specs)
    cells = spread_cells([{"winrate": 0.4, "winrate_se": None}, {"winrate": 0.6, "winrate_se": None}])
    assert cells == {"winrate": {"mean": 0.5, "std": pytest.approx(0.1414, abs=1e-4), "n": 2}}


def test_style_table_gives_each_share_with_its_spread_over_seeds():
    def rates(poem, verse, answer):
        return {"poetry": {"n": 16, "poem_rate": poem, "verse_rate": verse, "gsm8k_answer_rate": answer}}

    style = {
        "base": rates(0.0, 0.5, 0.0),
        "poetry-s0": rates(0.0, 0.6, 0.0),
        "poetry-s1": rates(0.1, 0.8, 0.0),
        "poetry-s2": rates(0.2, 0.7, 0.0),
    }
    lines = style_markdown(style)
    assert "| model | poetry (n=16) |" in lines
    assert "| base | 0% / 50% / 0% |" in lines  # one model: no spread to give
    assert "| poetry | 10% ± 10 / 70% ± 10 / 0% ± 0 |" in lines


def test_out_dir_of_another_budget_is_refused(tmp_path, monkeypatch):
    make_run(tmp_path, budget="smoke")
    with pytest.raises(UserError, match=r"made with --budget smoke; pass the same to resume it"):
        make_run(tmp_path, budget="laptop")
    make_run(tmp_path, budget="smoke", seeds=3)  # seeds are not part of the run's identity
    # a folder made before training settings were recorded resumes, and records them from then on
    identity_file = tmp_path / "replication.json"
    made_earlier = {key: value for key, value in json.loads(identity_file.read_text()).items() if key != "training"}
    identity_file.write_text(json.dumps(made_earlier))
    make_run(tmp_path, budget="smoke")
    assert json.loads(identity_file.read_text())["training"]["single_tasks"] == ["poetry"]
    # a budget re-sized after the run was made: its adapters were trained with other settings
    smoke = budgets.BUDGETS["smoke"]
    monkeypatch.setitem(budgets.BUDGETS, "smoke", dataclasses.replace(smoke, epochs=3))
    with pytest.raises(UserError, match=r"made with other training settings of budget smoke \(.*'epochs': 1"):
        make_run(tmp_path, budget="smoke")
    # evaluation sizes are not: a rerun with more AlpacaEval prompts only does the missing work
    monkeypatch.setitem(budgets.BUDGETS, "smoke", dataclasses.replace(smoke, alpaca_prompts=9))
    make_run(tmp_path, budget="smoke")


def test_out_dir_follows_the_data_files_not_their_folder(tmp_path):
    data = tmp_path / "data"
    (data / "lima").mkdir(parents=True)
    (data / "lima" / "lima_data.jsonl").write_text('{"conversations": ["hi", "hello"]}\n')
    (data / "lima" / "SOURCE.md").write_text("where it came from\n")
    make_run(tmp_path / "run", data_root=data)
    # the same files elsewhere (an unpacked archive on another machine) resume the run
    moved = tmp_path / "elsewhere"
    shutil.copytree(data, moved)
    (moved / "lima" / "SOURCE.md").write_text("reworded\n")  # documentation is not data
    make_run(tmp_path / "run", data_root=moved)
    # other rows do not
    (moved / "lima" / "lima_data.jsonl").write_text('{"conversations": ["hi", "bye"]}\n')
    with pytest.raises(
        UserError, match=rf"made with other data files \(those of --data-root {re.escape(str(data))}\); pass"
    ):
        make_run(tmp_path / "run", data_root=moved)
    # a folder made when the data was known by its path resumes from that path and records the files
    identity_file = tmp_path / "run" / "replication.json"
    recorded = json.loads(identity_file.read_text())
    identity_file.write_text(json.dumps({k: v for k, v in recorded.items() if k != "data"}))
    with pytest.raises(UserError, match=rf"made with --data-root {re.escape(str(data))} \(resume it from there once"):
        make_run(tmp_path / "run", data_root=moved)
    make_run(tmp_path / "run", data_root=data)
    assert json.loads(identity_file.read_text())["data"] == recorded["data"]


def replicate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "replicate.py"), *args], capture_output=True, text=True, timeout=300
    )


def test_bad_options_are_one_line_without_a_traceback(tmp_path):
    result = replicate("--seeds", "0", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "Invalid value for '--seeds': 0 is not in the range x>=1" in result.stderr
    both = replicate("--out", str(tmp_path / "x"), "--judge", "judge", "--judge-url", "http://127.0.0.1:1/v1")
    assert both.returncode == 1 and both.stderr == "Error: give either --judge SPEC or --judge-url URL, not both\n"
    no_data = replicate("--out", str(tmp_path / "x"), "--data-root", str(tmp_path))
    assert no_data.returncode == 1 and no_data.stderr == (
        f"Error: {tmp_path}: no lima/ folder (run: ijt-local data fetch all, or pass --data-root)\n"
    )
    assert not (tmp_path / "x").exists()


def test_a_stage_fails_with_the_library_s_one_line(tmp_path):
    # the data stage prepares LIMA in this process: a bad data file is named as `ijt-local data` names it
    (tmp_path / "data" / "lima").mkdir(parents=True)
    (tmp_path / "data" / "lima" / "lima_data.jsonl").write_text("{not json\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ijt_local",
            "replicate",
            "--out",
            str(tmp_path / "run"),
            "--data-root",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith("Error: ") and "lima_data.jsonl" in error, result.stderr


def test_reference_guided_stage_judges_the_same_pairs_again_beside_the_first_judge(tmp_path):
    # winrate-reference: no model, GPT-4's answers from the data root, its own folder (the first judge's stays)
    from ijt_local.replicate.report import winrate_rows
    from ijt_local.replicate.stages import REFERENCE_ANSWERS

    run = make_run(tmp_path / "out", data_root=tmp_path / "data")
    assert run.stage_inputs("winrate-reference")["judge"] == "chrf1 (reference-guided)"
    assert run.stage_inputs("winrate-reference")["pairs"] == run.lineup.judged_pairs()
    answers = {"Name a colour.": "Blue is a colour of the sky.", "Count to three.": "One, two, three."}
    references = tmp_path / "data" / REFERENCE_ANSWERS
    references.parent.mkdir(parents=True)
    references.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in answers.items()))
    pairs = run.lineup.judged_pairs()
    generations = run.out / "compare-alpaca" / "generations"
    generations.mkdir(parents=True)
    for name in {*pairs, *(n for names in pairs.values() for n in names)}:
        close = name != "base"  # base's replies are far from GPT-4's answers, every other model's close
        rows = [
            {"instruction": q, "output": a if close and name not in pairs else ("zzz" if close else "qqq")}
            for q, a in answers.items()
        ]
        (generations / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    record = run.winrate_reference()
    assert record["judge"] == "chrf1 (reference-guided)" and record["reference_answers"] == REFERENCE_ANSWERS
    assert not (run.out / "winrate").exists()
    summaries = record["winrate"]["instruct-s0"]
    assert summaries["rules"]["win_rate"] > 0.5 and summaries["rules"]["order_consistent"] == 1.0
    rows = winrate_rows(record, run.out, "winrate-reference")
    assert rows["rules"][0]["winrate_verdicts"] == 1.0 and rows["base"][0]["winrate_verdicts"] == 0.5  # a tie
