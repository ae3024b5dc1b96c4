"""Agreement with GPT-4 and the reference judges' cross-fit (ijt_local/eval/judge_agreement.py), on small
hand-made sets of judgements whose figures can be worked out by hand."""

import json
import math

import numpy as np
import pytest

from ijt_local.errors import UserError
from ijt_local.eval.judge import judgement_key
from ijt_local.eval.judge_agreement import (
    LENGTH_JUDGE,
    _Validation,
    agreement,
    cached_llm_values,
    cross_fit,
    load_pairs,
    paired,
    summarize,
    validate_reference_judges,
    verdict_agreement,
)
from ijt_local.eval.reference_answers import ReferenceAnswers
from ijt_local.eval.reference_judges import REFERENCE_JUDGES, fit_symmetric_logistic


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pair(file, gpt4, output_1, output_2, instruction="Q?"):
    return {"file": file, "instruction": instruction, "output_1": output_1, "output_2": output_2, "gpt4": gpt4}


def test_decided_pairs_are_pooled_over_the_files_and_a_larger_sample_extends_the_same_one(tmp_path):
    _write(
        tmp_path / "a.jsonl",
        [
            {"instruction": f"a{i}", "output_1": "x", "output_2": "y", "preference": p}
            for i, p in enumerate([1, 2.0, 0, None, 1.5, 2])
        ],
    )
    _write(tmp_path / "b.jsonl", [{"instruction": "b0", "output_1": "x", "output_2": "y", "preference": 1.0}])
    every = load_pairs(tmp_path, None, seed=3)
    assert sorted(p["instruction"] for p in every) == ["a0", "a1", "a5", "b0"]  # 0, missing, 1.5: no decision
    assert {p["instruction"]: (p["file"], p["gpt4"]) for p in every}["a1"] == ("a", 2)
    assert load_pairs(tmp_path, 2, seed=3) == every[:2] and load_pairs(tmp_path, None, seed=3) == every
    with pytest.raises(UserError, match="no \\*.jsonl"):
        load_pairs(tmp_path / "nothing", None, seed=0)


def test_ties_and_void_judgements_count_half():
    assert agreement(0.8, 2) == 1.0 and agreement(0.8, 1) == 0.0 and agreement(0.2, 1) == 1.0
    assert agreement(0.5, 2) == agreement(None, 1) == 0.5
    assert verdict_agreement(1.3, 2) == 1.0 and verdict_agreement(-0.1, 2) == 0.0 and verdict_agreement(0.0, 1) == 0.5


def test_summary_of_four_hand_made_judged_pairs():
    judgement = {"seconds": 2.0, "prompt_tokens": 300}
    rows = [
        # GPT-4 prefers output_2, the longer one; the judge too, in both orders
        {
            "gpt4": 2,
            "values": {"output_first": 0.8, "reference_first": 0.6},
            "judgements": [judgement, {"seconds": 4.0, "prompt_tokens": 500}],
            "pair": _pair("f", 2, "short", "much longer"),
        },
        # GPT-4 prefers output_1, the longer one; the judge output_2 in its one valid order
        {
            "gpt4": 1,
            "values": {"output_first": 0.9, "reference_first": None},
            "judgements": [judgement, judgement],
            "pair": _pair("f", 1, "much longer", "short"),
        },
        # no preference either way, equal lengths
        {
            "gpt4": 2,
            "values": {"output_first": 0.5, "reference_first": 0.5},
            "judgements": [judgement, judgement],
            "pair": _pair("g", 2, "same", "size"),
        },
        # identical outputs: not judged
        {"gpt4": 1, "values": {}, "judgements": [], "pair": _pair("g", 1, "same", "same")},
    ]
    s = summarize(rows, "j", "direct", 400, seed=7, requested=5)
    assert (s["judge"], s["form"], s["max_output_tokens"], s["seed"]) == ("j", "direct", 400, 7)
    assert s["pairs"] == 4 and s["pairs_requested"] == 5 and not s["complete"]
    # per pair: judge 1, 0, 0.5, 0.5; length 1, 1, 0.5, 0.5; differences 0, -1, 0, 0
    assert s["agreement"] == 0.5 and s["agreement_se"] == round(math.sqrt(1 / 6 / 4), 4)
    assert s["length_baseline"] == 0.75 and s["length_baseline_se"] == round(math.sqrt(1 / 12 / 4), 4)
    assert s["difference_vs_length"] == -0.25 and s["difference_vs_length_se"] == 0.25
    assert s["chance"] == 0.5 and s["majority_baseline"] == 0.5
    assert s["agreement_output_first_only"] == 0.5  # 1, 0, 0.5
    assert s["agreement_reference_first_only"] == 0.75  # 1, 0.5
    assert s["first_position_preference"] == 0.62  # 0.8, 0.9, 0.5 first; 1 - 0.6, 1 - 0.5 second
    assert s["judge_picks_longer"] == 0.5 and s["invalid_judgements"] == 1
    assert s["seconds_per_judgement"] == round(14 / 6, 4) and s["seconds_per_pair"] == round(28 / 6, 2)
    assert s["mean_prompt_tokens"] == round(2000 / 6)
    assert s["by_file"] == {
        "f": {"pairs": 2, "agreement": 0.5, "length_baseline": 1.0},
        "g": {"pairs": 2, "agreement": 0.5, "length_baseline": 0.5},
    }
    one = summarize(rows[:1], "j", "direct", 400, seed=0, requested=1)
    assert one["complete"] and one["agreement"] == 1.0 and math.isnan(one["agreement_se"])
    with pytest.raises(UserError, match="no pair was judged"):
        summarize([], "j", "direct", 400, seed=0, requested=1)


def test_paired_difference_against_length():
    result = paired([1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0])
    assert result["pairs"] == 4 and result["agreement"] == 0.75 and result["length_baseline"] == 0.75
    assert result["difference_vs_length"] == 0.0 and result["difference_vs_length_se"] == round(math.sqrt(2 / 3 / 4), 4)


def test_cross_fit_scores_each_group_with_the_weights_fitted_without_it():
    x = np.array([[1.0], [2.0], [-1.0], [0.5], [-2.0], [1.5], [-0.5], [3.0], [-1.5]])
    y = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    groups = np.array(["a", "a", "a", "a", "b", "b", "b", "b", "c"])
    scores, without, weights = cross_fit(x, y, groups, ["a", "b", "c", "d"])
    assert set(without) == {"a", "b", "c"}  # "d" has no rows to test on
    for group in ("a", "b", "c"):
        held = groups == group
        assert without[group] == pytest.approx(fit_symmetric_logistic(x[~held], y[~held]))
        assert scores[held] == pytest.approx(x[held] @ without[group])
    assert all(w[0] > 0 for w in without.values())  # a larger feature for output_2: output_2 wins more often
    assert weights == pytest.approx(fit_symmetric_logistic(x, y))
    lone = cross_fit(x[:3], y[:3], np.array(["a", "a", "b"]), ["a", "b"])
    assert set(lone[1]) == {"b"} and lone[0][:2].tolist() == [0.0, 0.0]  # one row left to fit on: not held out


def test_cached_llm_judgements_are_found_by_key_in_both_orders():
    class Judge:
        cache_id = "llm"

        def first_probability(self, row):
            return row["p"]

    references = ReferenceAnswers({"Q1?": "R1", "Q2?": "R2"})
    pairs = [_pair("f", 2, "one", "two", "Q1?"), _pair("f", 1, "three", "four", "Q2?")]
    rows = {
        judgement_key("llm", "output_first", "Q1?", "two", "one", "R1"): {"p": 0.7, "seconds": 1.0},
        judgement_key("llm", "reference_first", "Q1?", "one", "two", "R1"): {"p": 0.4, "seconds": 2.0},
        judgement_key("llm", "output_first", "Q2?", "four", "three", "R2"): {"p": 0.1, "seconds": 1.0},
    }
    assert cached_llm_values(pairs, references, Judge(), rows) == [{"values": [0.7, 0.4], "seconds": 3.0}, None]


def test_reference_judges_on_six_hand_made_pairs(tmp_path):
    reference = {f"{f}{i}?": "the capital of france is paris" for f in "ab" for i in range(3)}
    close, far = "the capital of france is paris indeed", "no idea at all, sorry, none whatsoever to give"
    dev = tmp_path / "dev"
    dev.mkdir()
    for f in "ab":
        _write(
            dev / f"{f}.jsonl",
            [
                # GPT-4 picks the reply closer to the reference, except in the third pair of each set
                {"instruction": f"{f}0?", "output_1": far, "output_2": close, "preference": 2},
                {"instruction": f"{f}1?", "output_1": close, "output_2": far, "preference": 1},
                {"instruction": f"{f}2?", "output_1": close, "output_2": far + " and more words", "preference": 2},
            ],
        )
    answers = _write(tmp_path / "answers.jsonl", [{"instruction": q, "output": a} for q, a in reference.items()])
    lines = validate_reference_judges(dev, answers, tmp_path / "no-cache.jsonl", "judge", 400, seed=0)
    by_name = {line["judge"]: line for line in lines}
    assert set(by_name) == {LENGTH_JUDGE} | {n for n, r in REFERENCE_JUDGES.items() if not r.needs_llm}
    length = by_name[LENGTH_JUDGE]
    # the far reply is the longer one: the longer output wins only pair 2 of each set
    assert length["pairs"] == 6 and length["agreement"] == round(2 / 6, 4) and length["judge_picks_longer"] == 1.0
    assert length["by_file"]["a"]["agreement"] == length["by_file"]["b"]["agreement"] == round(1 / 3, 4)
    chrf1 = by_name["chrf1"]
    assert chrf1["covers_all_pairs"] and chrf1["reference_answers"] == "answers.jsonl"
    assert set(chrf1["weights_cross_fit"]) == {"fit_without_a", "fit_without_b"}
    # out of sample the chrF judge picks the closer reply: right on pairs 0 and 1, wrong on 2
    assert chrf1["agreement"] == round(4 / 6, 4) and chrf1["weights_all_pairs"]["similarity"] > 0
    assert chrf1["judge_picks_longer"] == 0.0 and chrf1["difference_vs_length"] == round(2 / 6, 4)
    assert by_name["chrf"]["chrf1_same_pairs"] == chrf1["agreement"]
    with pytest.raises(UserError, match="no reference answer for 1 dev pairs"):
        _write(answers, [{"instruction": q, "output": a} for q, a in reference.items() if q != "a0?"])
        validate_reference_judges(dev, answers, tmp_path / "no-cache.jsonl", "judge", 400, seed=0)


def test_a_judge_covering_some_pairs_is_read_against_those_pairs_picks():
    # GPT-4 picks output_1, output_2, output_2; the judge covers pairs 1 and 2 and prefers output_2 on both
    pairs = [_pair("a", 1, "x", "yy"), _pair("a", 2, "xx", "y"), _pair("b", 2, "x", "yy")]
    default_metric = REFERENCE_JUDGES["chrf1"].metric
    columns = {"length": [1.0, -1.0, 1.0], default_metric: [1.0, 1.0, -1.0]}
    line = _Validation(pairs, columns, "answers.jsonl").line("judge", [1.0, 1.0], [1, 2], {})
    assert not line["covers_all_pairs"] and line["pairs"] == 2
    assert line["agreement"] == 1.0  # both covered pairs went to output_2
    assert line["length_baseline"] == 0.5  # longer wins pair 2 only
    assert line["chrf1_same_pairs"] == 0.5 and line["difference_vs_chrf1"] == 0.5
