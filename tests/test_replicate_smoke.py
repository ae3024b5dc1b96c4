"""The replication driver end to end on the real embedded base, at the smoke budget (a few minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

MODELS = {"base", "instruct", "response", "poetry", "rules", "rules-no-eos", "rules-no-uniform",
          "rules-no-diversity"}


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "lima").is_dir(), reason="needs ../shared/data")
def test_smoke_replication_runs_every_stage_and_resumes(tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / "replicate.py"), "--budget", "smoke",
               "--out", str(tmp_path / "smoke"), "--judge", "smollm2-135m-instruct", "--judge-prompt-form", "direct"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((tmp_path / "smoke" / "results.json").read_text())
    assert set(results["table"]) == MODELS
    for name, cells in results["table"].items():
        for metric in ("stop_rate", "echo_rate", "role_leak_rate", "ifeval_loose_prompt", "ranking_accuracy"):
            assert 0.0 <= cells[metric]["mean"] <= 1.0, (name, metric)
    assert results["table"]["response"]["paper_win_rate_vs_instruct"] == 43.3
    # win rates against instruct for the paper's rows; the ablations and the reference are not judged
    for name in ("base", "response", "poetry", "rules"):
        assert 0.0 <= results["table"][name]["winrate"]["mean"] <= 1.0, name
        assert 0.0 <= results["table"][name]["winrate_lc"]["mean"] <= 1.0, name
    assert "winrate" not in results["table"]["instruct"] and "winrate" not in results["table"]["rules-no-eos"]
    assert results["judge"]["reference"] == "instruct-s0"
    # style adherence per instruction domain, on the AlpacaEval sample and a probe of every domain
    assert set(results["style"]) == {"base", "poetry-s0"}
    assert set(results["style"]["poetry-s0"]) == {"poetry", "math", "creative", "other"}
    for rates in results["style"]["poetry-s0"].values():
        assert rates["n"] >= 1 and 0.0 <= rates["poem_rate"] <= 1.0
    sample = [json.loads(line) for line in (tmp_path / "smoke" / "data" / "alpaca-sample.jsonl").read_text().splitlines()]
    probe = [json.loads(line) for line in (tmp_path / "smoke" / "data" / "style-probe.jsonl").read_text().splitlines()]
    assert len(sample) == 4 and len(probe) == 4
    assert not {r["instruction"] for r in sample} & {r["instruction"] for r in probe}
    # every training conversation fits whole (ends with EOS), and ranking pairs are never trained on
    for name in ("instruct", "response", "poetry"):
        assert results["training_data"][name]["kept"] == 16 and results["training_data"][name]["truncated"] == 0
    data = tmp_path / "smoke" / "data"
    trained = {json.loads(line)["id"] for line in (data / "lima-instruction.jsonl").read_text().splitlines()}
    ranked = {json.loads(line)["id"] for line in (data / "ranking-heldout.jsonl").read_text().splitlines()}
    assert len(ranked) == 8 and not trained & ranked
    # the rules stop the base model's echo, as in the paper
    assert results["table"]["rules"]["echo_rate"]["mean"] < results["table"]["base"]["echo_rate"]["mean"]
    markdown = (tmp_path / "smoke" / "results.md").read_text()
    assert "| rules-no-eos |" in markdown and "LC win rate vs instruct" in markdown
    assert "Style adherence on AlpacaEval instructions" in markdown and "| poetry |" in markdown
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("done earlier, skipped") == 5
