"""`ijt-local replicate` end to end on the real embedded base, at the smoke budget (a few minutes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ijt_local.data.home import data_home

ROOT = Path(__file__).resolve().parents[1]
DATA = data_home()

MODELS = {
    *("base", "instruct", "response", "poetry"),
    *("rules", "rules-no-eos", "rules-no-uniform", "rules-no-diversity", "rules-start"),
}


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "lima").is_dir(), reason="needs the data home (ijt-local data fetch all)")
def test_smoke_replication_runs_every_stage_and_resumes(tmp_path):
    command = [
        sys.executable,
        "-m",
        "ijt_local",
        "replicate",
        "--budget",
        "smoke",
        "--out",
        str(tmp_path / "smoke"),
        "--judge",
        "smollm2-135m-instruct",
        "--judge-prompt-form",
        "direct",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((tmp_path / "smoke" / "results.json").read_text())
    assert set(results["table"]) == MODELS
    for name, cells in results["table"].items():
        for metric in ("stop_rate", "echo_rate", "role_leak_rate", "ifeval_loose_prompt", "ranking_accuracy"):
            assert 0.0 <= cells[metric]["mean"] <= 1.0, (name, metric)
    assert results["table"]["response"]["paper_win_rate_vs_instruct"] == 43.3
    # win rates against instruct for every other row
    for name in ("base", "response", "poetry", "rules", "rules-no-eos"):
        assert 0.0 <= results["table"][name]["winrate"]["mean"] <= 1.0, name
        assert 0.0 <= results["table"][name]["winrate_lc"]["mean"] <= 1.0, name
        assert results["table"][name]["winrate_se"]["mean"] >= 0.0, name
        assert 0.0 <= results["table"][name]["winrate_order_consistent"]["mean"] <= 1.0, name
    assert "winrate" not in results["table"]["instruct"]
    # the reference-guided judge (GPT-4's answers in shared data) gets its own table beside the LLM judge's
    reference = results["reference_judge"]
    assert reference["reference_answers"].endswith("gpt4.jsonl")
    for name in ("base", "response", "poetry", "rules"):
        assert 0.0 <= reference["table"][name]["winrate"]["mean"] <= 1.0, name
    assert results["judge"]["references"] == ["instruct-s0"] and results["seeds"] == [0]
    assert results["rule_sets"]["rules"] == "eos,uniform,diversity"  # the paper's headline run, no `start`
    assert results["rule_sets"]["rules-start"] == "eos,uniform,diversity,start"
    follows = results["judge"]["follows"]  # what the judge's preferences follow, over the judged pairs
    assert 0 <= follows["pairs"] <= 8 * 4  # 8 models judged against instruct-s0, 4 instructions
    assert all(follows[s] is None or -1.0 <= follows[s] <= 1.0 for s in ("repetition", "echo", "length"))
    assert set(follows["echo_split"]) == set(follows["equal_repetition"]) == MODELS - {"instruct"}
    assert all(cell["pairs"] <= 4 for cell in follows["equal_repetition"].values())
    # style adherence per instruction domain, on the AlpacaEval sample and a probe of every domain
    assert set(results["style"]) == {"base", "poetry-s0"}
    assert set(results["style"]["poetry-s0"]) == {"poetry", "math", "creative", "other"}
    for rates in results["style"]["poetry-s0"].values():
        assert rates["n"] >= 1 and 0.0 <= rates["poem_rate"] <= 1.0
    sample = [
        json.loads(line) for line in (tmp_path / "smoke" / "data" / "alpaca-sample.jsonl").read_text().splitlines()
    ]
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
    assert "order-consistent verdicts %" in markdown and "s.e. (instructions)" in markdown
    assert "Style adherence on AlpacaEval instructions" in markdown and "| poetry |" in markdown
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("done earlier, skipped") == 6  # data train convert evaluate winrate winrate-reference

    # --archive packs what the report needs, without weights or GGUFs; unpacked elsewhere, the same
    # command skips every stage and writes the same table
    archive = tmp_path / "smoke.tar.xz"
    packed = subprocess.run([*command, "--archive", str(archive)], capture_output=True, text=True, timeout=600)
    assert packed.returncode == 0, packed.stderr[-3000:]
    import tarfile

    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "restored", filter="data")
    assert "smoke/stages/winrate.json" in names and "smoke/adapters/poetry-s0/run.json" in names
    assert not [n for n in names if n.endswith((".gguf", ".safetensors")) or "/checkpoints/" in n]
    assert "smoke/data/lima-instruction.jsonl" not in names and "smoke/data/alpaca-sample.jsonl" in names
    restored = tmp_path / "restored" / "smoke"
    rebuilt = subprocess.run(
        [*command[: command.index("--out")], "--out", str(restored), *command[command.index("--out") + 2 :]],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert rebuilt.stderr.count("done earlier, skipped") == 6
    assert json.loads((restored / "results.json").read_text())["table"] == results["table"]

    # --dry-run plans the same budget from the same data: its rows, steps and tokens are what training did
    plan_run = subprocess.run(
        [*command[:4], "--budget", "smoke", "--out", str(tmp_path / "untouched"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert plan_run.returncode == 0, plan_run.stderr[-3000:]
    plan = json.loads(plan_run.stdout.splitlines()[-1])
    for name in ("instruct", "response", "poetry"):
        assert plan["adapters"][name]["rows"] == results["training_data"][name]["kept"]
        assert plan["adapters"][name]["steps"] == results["training"][f"{name}-s0"]["steps"] == 4
        assert plan["adapters"][name]["tokens"] == results["training_data"][name]["tokens"]  # one epoch
    assert plan["judgements"] == 8 * 4 and plan["models"] == len(MODELS)  # all but instruct, 4 instructions
    assert plan["measured"]["train_tokens_per_second"] > 0 and plan["measured"]["generate_tokens_per_second"] > 0
    assert plan["hours"]["train"] > 0 and "estimated hours here" in plan_run.stdout
    assert not (tmp_path / "untouched").exists()


@pytest.mark.skipif(not (DATA / "lima").is_dir(), reason="needs the data home (ijt-local data fetch all)")
def test_dry_run_of_a_hugging_face_base_converts_it_for_the_runtime(tmp_path):
    from tiny_models import make_tiny_llama

    base = make_tiny_llama(tmp_path / "tiny-llama")
    # SmolLM2's tokenizer spells poems longer than gemma's: the fixture's 7 poems instead of the real 573
    data_root = tmp_path / "data"
    data_root.mkdir()
    for name in ("lima", "val", "alpaca_eval", "ifeval"):
        (data_root / name).symlink_to(DATA / name)
    (data_root / "poetry").symlink_to(ROOT / "tests" / "fixtures" / "data" / "poetry")
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "replicate.py"),
            "--budget",
            "smoke",
            "--base",
            str(base),
            "--data-root",
            str(data_root),
            "--out",
            str(tmp_path / "untouched"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    plan = json.loads(run.stdout.splitlines()[-1])
    assert plan["base"] == str(base) and plan["adapters"]["instruct"]["rows"] == 16
    # a source smaller than the budget is used whole, and the run says so
    poems = plan["adapters"]["poetry"]["rows"]
    assert 1 <= poems <= 7 and f"poetry has {poems} rows that fit 128 tokens, not the 16" in run.stderr
    assert "convert: " in run.stderr and "base-f16.gguf" in run.stderr  # the runtime needs a GGUF of the base
    assert plan["measured"]["generate_tokens_per_second"] > 0
    assert not (tmp_path / "untouched").exists()
