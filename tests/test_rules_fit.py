"""`ijt-local rules fit` end to end on small real models: the search runs, continues, writes a TOML that
`--rules-config` loads, and scores on a test split disjoint from the dev split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from ijt_local.eval.ifeval.run import default_data_path, load_ifeval  # noqa: E402
from ijt_local.rules.expert import load_rules  # noqa: E402
from ijt_local.rules_fit.search import default_params, load_fit_data  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = [
    "--behaviour-data",
    str(FIXTURES / "val_sample.jsonl"),
    "--behaviour-size",
    "4",
    "--dev-size",
    "3",
    "--test-size",
    "3",
    "--max-tokens",
    "24",
    "--min-stop",
    "0",
    "--max-leak",
    "1",
    "--max-echo",
    "1",
]


def fit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ijt_local", "rules", "fit", *args], capture_output=True, text=True, timeout=900
    )


def test_dev_and_test_are_disjoint_halves():
    data = load_fit_data("ifeval", FIXTURES / "val_sample.jsonl", 4, 20, None, None, 64, session=None, test_size=20)
    rows = load_ifeval(default_data_path())
    assert [r["key"] for r in data.dev] == [r["key"] for r in rows[0:40:2]]
    assert [r["key"] for r in data.test] == [r["key"] for r in rows[1:40:2]]
    assert not {r["key"] for r in data.dev} & {r["key"] for r in data.test}
    every_odd_row = load_fit_data("ifeval", FIXTURES / "val_sample.jsonl", 4, 20, None, None, 64, session=None)
    assert [r["key"] for r in every_odd_row.test] == [r["key"] for r in rows[1::2]]


@pytest.mark.slow
def test_fit_writes_a_loadable_config_and_continues(tmp_path):
    out = tmp_path / "fitted.toml"
    first = fit("--model", "smollm2-135m-instruct", "--objective", "ifeval", "--out", str(out), "--trials", "1", *SMALL)
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads(first.stdout.splitlines()[-1])
    assert result["trials"] == 1 and result["params"] == pytest.approx(default_params(None))  # the paper's first
    assert set(result["test"]) == {"fitted", "paper defaults", "base model (no rules)"}
    for scores in result["test_details"].values():  # echoes of the prompt can only lose IFEval passes
        assert scores["no_echo"] <= scores["score"] and 0 <= scores["echo_rate"] <= 1
    assert result["splits"] == {"dev": 3, "test": 3, "behaviour": 4}
    assert "echoes of the prompt counted as failures" in out.read_text()
    header = out.read_text().splitlines()[:4]
    assert "smollm2-135m-instruct" in header[0] and "objective: ifeval, 3 dev / 3 test" in header[1]
    loaded = load_rules(config_path=out)  # what --rules-config reads
    assert loaded.settings["eos"]["max_bonus"] == pytest.approx(result["params"]["eos_max_bonus"])
    assert loaded.settings["diversity"]["penalty"] == pytest.approx(result["params"]["diversity_penalty"])

    again = fit("--model", "smollm2-135m-instruct", "--objective", "ifeval", "--out", str(out), "--trials", "3", *SMALL)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.splitlines()[-1])["trials"] == 3  # two more, not three new
    assert again.stderr.count("trial ") == 2 and "trial 0:" not in again.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--objective", "ifeval", "--trials", "0"], "give a budget above zero"),
        pytest.param(  # opens the model before it checks the objective
            ["--objective", "ranking", "--trials", "2"],
            "--objective ranking needs --ranking-data",
            marks=pytest.mark.slow,
        ),
        (
            ["--objective", "ifeval", "--trials", "2", "--behaviour-data", "nope.jsonl"],
            "--behaviour-data nope.jsonl: no such file",
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    run = fit("--model", "smollm2-135m-instruct", "--out", str(tmp_path / "x.toml"), *args)
    assert run.returncode == 1 and message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.toml").exists()


def test_fit_runs_on_a_tiny_test_model(tmp_path):
    from tiny_models import make_tiny_llama

    from ijt_local.convert.hf_to_gguf import convert

    gguf = tmp_path / "tiny.gguf"
    convert(make_tiny_llama(tmp_path / "tiny"), gguf, "f32", progress=False)
    run = fit(
        "--model", str(gguf), "--objective", "ifeval", "--out", str(tmp_path / "tiny.toml"), "--trials", "2", *SMALL
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1])["trials"] == 2 and (tmp_path / "tiny.toml").exists()
