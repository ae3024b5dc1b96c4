"""Response ranking (paper §4.2) on the real embedded GGUFs with hand-made instruction-response pairs."""

import json
import random

import pytest
from click.testing import CliRunner

from ijt_local.cli import cli
from ijt_local.errors import UserError
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


def test_pick_others_draws_distinct_others_never_itself_and_is_seeded():
    for n in (2, 3, 10):
        for count in range(1, n):
            drawn = pick_others(n, seed=1, others=count)
            assert all(
                len(set(js)) == count and i not in js and all(0 <= j < n for j in js) for i, js in enumerate(drawn)
            )
    assert pick_others(10, seed=3, others=5) == pick_others(10, seed=3, others=5)
    # one other is what the earlier version drew (one randrange(n - 1) per i, shifted past i): its caches hold
    rng = random.Random(3)
    earlier = [[j + 1 if j >= i else j for j in [rng.randrange(9)]] for i in range(10)]
    assert pick_others(10, seed=3) == earlier
    with pytest.raises(UserError, match="--others 4: between 1 and 3"):
        pick_others(4, seed=0, others=4)


def test_ranking_accuracy_is_over_pairs_with_its_error_over_instructions():
    rows = [{"own": -1.0, "other": -2.0}, {"own": -2.0, "other": -1.0}, {"own": -1.0, "other": -1.0}]
    result = ranking_accuracy(rows)  # one other each (rows written before --others): ties count half
    assert result["ranking_accuracy"] == pytest.approx(0.5)
    assert result["pairs"] == 3 and result["standard_error"] > 0
    rows = [
        {"own": -1.0, "other_ids": ["b", "c"], "others": [-2.0, -0.5]},  # one of its two pairs right
        {"own": -1.0, "other_ids": ["a", "c"], "others": [-3.0, -4.0]},  # both right
    ]
    result = ranking_accuracy(rows)
    assert result["instructions"] == 2 and result["pairs"] == 4
    assert result["ranking_accuracy"] == pytest.approx(0.75)
    assert result["standard_error"] == pytest.approx(0.25)  # of the per-instruction shares 0.5 and 1.0
    assert result["mean_other_logprob"] == pytest.approx(-2.375)


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
    assert first["instructions"] == 4 and first["others"] == 3  # the default 5, capped at the 3 there are
    assert first["pairs"] == 12
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


@pytest.mark.slow
def test_a_score_does_not_depend_on_the_responses_scored_beside_it(smollm_session):
    """score_responses decodes the prompt once and each response after it in whole row groups: every score
    is bit-identical to scoring that response alone, in any order."""
    messages = [{"role": "user", "content": PAIRS[1][0]}]
    responses = [response for _, response in PAIRS]
    together = smollm_session.score_responses(messages, responses)
    reversed_ = smollm_session.score_responses(messages, responses[::-1])[::-1]
    alone = [smollm_session.score_response(messages, response) for response in responses]
    assert [s.logprob_sum for s in together] == [s.logprob_sum for s in alone] == [s.logprob_sum for s in reversed_]
    assert [s.n_tokens for s in together] == [len(smollm_session.tokenize(r, special=False)) for r in responses]
    assert together[1].mean_logprob == max(s.mean_logprob for s in together)  # its own answer scores best
