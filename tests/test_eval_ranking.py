"""Response ranking (paper §4.2) on the real embedded GGUFs with hand-made instruction-response pairs."""

import json

import pytest
from click.testing import CliRunner

from ijt_local.cli import cli
from ijt_local.eval.ranking import pick_others, ranking_accuracy, run_ranking

PAIRS = [
    ("Translate 'good morning' into French.", "Bonjour."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("Write a Python function that adds two numbers.", "def add(a, b):\n    return a + b"),
    ("Name three primary colors.", "Red, blue and yellow."),
]


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"instruction": i, "output": o}) + "\n" for i, o in PAIRS))
    return path


def test_pick_others_never_picks_itself_and_is_seeded():
    for n in (2, 3, 10):
        others = pick_others(n, seed=1)
        assert all(j != i and 0 <= j < n for i, j in enumerate(others))
    assert pick_others(10, seed=3) == pick_others(10, seed=3)


def test_ranking_accuracy_counts_ties_half():
    rows = [{"own": -1.0, "other": -2.0}, {"own": -2.0, "other": -1.0}, {"own": -1.0, "other": -1.0}]
    result = ranking_accuracy(rows)
    assert result["ranking_accuracy"] == pytest.approx(0.5)
    assert result["pairs"] == 3 and result["standard_error"] > 0


@pytest.mark.slow
def test_instruct_model_ranks_matching_responses_first_and_resumes(pairs_file, tmp_path):
    cache = tmp_path / "scores.jsonl"
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "ranking",
            "--model",
            "smollm2-135m-instruct",
            "--data",
            str(pairs_file),
            "--out",
            str(cache),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    first = json.loads(result.output[result.output.index("{") :])
    assert first["pairs"] == 4
    assert first["ranking_accuracy"] >= 0.75  # these pairs are unambiguous
    assert first["mean_own_logprob"] > first["mean_other_logprob"]
    assert len(cache.read_text().splitlines()) == 4
    logged = []
    again = run_ranking("smollm2-135m-instruct", pairs_file, out=cache, log=logged.append)
    assert logged == []  # all from the cache, no model loaded
    assert again["ranking_accuracy"] == first["ranking_accuracy"]


@pytest.mark.slow
def test_poe_scores_are_the_normalised_product_of_experts(pairs_file):
    plain = run_ranking("default", pairs_file, limit=2, threads=1, log=lambda _: None)
    poe = run_ranking("default+poe", pairs_file, limit=2, threads=1, log=lambda _: None)
    assert poe["model"]["poe"] and not plain["model"]["poe"]
    assert poe["mean_own_logprob"] < 0 and plain["mean_own_logprob"] < 0
    assert poe["mean_own_logprob"] != pytest.approx(plain["mean_own_logprob"])


def test_ranking_needs_responses(tmp_path):
    path = tmp_path / "no_responses.jsonl"
    path.write_text('{"instruction": "a"}\n{"instruction": "b"}\n')
    result = CliRunner().invoke(cli, ["eval", "ranking", "--model", "default", "--data", str(path)])
    assert result.exit_code == 1 and "has no response to rank" in result.output
