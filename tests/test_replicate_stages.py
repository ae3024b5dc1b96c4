"""replicate.py's stage bookkeeping: a finished stage is never redone, an interrupted one keeps its time."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def replicate():
    spec = importlib.util.spec_from_file_location("replicate", ROOT / "scripts" / "replicate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["replicate"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["replicate"]


def make_run(replicate, out: Path):
    args = argparse.Namespace(budget="smoke", out=str(out), data_root=str(out), seeds=1, base="default",
                              judge_url=None, judge_model="judge")
    return replicate.Replication(args)


def test_interrupted_stage_keeps_its_time_and_resumes(replicate, tmp_path, monkeypatch):
    monkeypatch.setattr(replicate, "CLOCK_TICK", 0.05)
    calls = []

    def interrupted():
        calls.append("first")
        time.sleep(0.3)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_run(replicate, tmp_path).stage("train", interrupted)
    stages = tmp_path / "stages"
    assert not (stages / "train.json").exists()
    spent_first = json.loads((stages / "train.partial.json").read_text())["seconds"]
    assert 0.3 <= spent_first < 30

    result = make_run(replicate, tmp_path).stage("train", lambda: calls.append("second") or {"adapters": 4})
    assert result["adapters"] == 4 and spent_first <= result["seconds"] < spent_first + 30
    assert not (stages / "train.partial.json").exists()
    assert json.loads((stages / "train.json").read_text()) == result

    again = make_run(replicate, tmp_path).stage("train", lambda: calls.append("third") or {})
    assert again == result and calls == ["first", "second"]


def test_stage_seconds_sum_finished_stages_only(replicate, tmp_path):
    run = make_run(replicate, tmp_path)
    (tmp_path / "stages" / "data.json").write_text(json.dumps({"seconds": 60.0}))
    (tmp_path / "stages" / "train.json").write_text(json.dumps({"seconds": 1500.5}))
    (tmp_path / "stages" / "evaluate.partial.json").write_text(json.dumps({"seconds": 900.0}))
    assert run.stage_seconds() == 1560.5
