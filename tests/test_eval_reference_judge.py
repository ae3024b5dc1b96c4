"""Reference-guided judging: reference answers, the similarity judges, their symmetric calibration, the
LLM judge's MT-bench reference prompt, the CLI option, and the agreement script on tiny dev data."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ijt_local.cli import cli
from ijt_local.errors import UserError
from ijt_local.eval.judge import OpenAIJudge, judge_instructions, parse_verdict, summarize
from ijt_local.eval.judge_prompts import get_form
from ijt_local.eval.reference_answers import ReferenceAnswers
from ijt_local.eval.reference_judges import (
    DEFAULT_REFERENCE_JUDGE,
    REFERENCE_JUDGES,
    JudgeRecipe,
    ReferenceJudge,
    fit_symmetric_logistic,
    llm_feature,
)

ROOT = Path(__file__).resolve().parents[1]

REFERENCES = {
    "What is the capital of France?": "The capital of France is Paris.",
    "Name a primary colour.": "Red is a primary colour.",
}
OURS = {
    "What is the capital of France?": "Paris is the capital of France.",
    "Name a primary colour.": "I like turtles and long walks on the beach, every single day of the year.",
    "Tell me a joke.": "Why did the chicken cross the road?",
}
THEIRS = {
    "What is the capital of France?": "I do not know anything about geography, sorry about that friend.",
    "Name a primary colour.": "Red is one.",
    "Tell me a joke.": "No.",
}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_reply_closer_to_the_reference_wins_in_either_order_and_unreferenced_ones_are_counted(tmp_path):
    judge = ReferenceJudge("chrf1", ReferenceAnswers(REFERENCES))
    rows = judge_instructions(OURS, THEIRS, judge, tmp_path / "cache.jsonl")
    france, colour, joke = rows
    assert france["preference"] > 0.5 > colour["preference"]  # closer to the reference wins, length aside
    for row in (france, colour):  # no position term: both orders give the same probability
        assert row["output_first"] == pytest.approx(row["reference_first"])
    assert joke["no_reference_answer"] and joke["preference"] is None and joke["output_first"] is None
    summary = summarize(rows, judge)
    assert summary["scored"] == 2 and summary["no_reference_answer"] == 1
    assert summary["position_bias_logit"] == pytest.approx(0.0, abs=1e-9)
    assert summary["reference_answers_count"] == 2
    assert summary["judge_agreement_with_gpt4"] == REFERENCE_JUDGES["chrf1"].agreement
    assert "note" not in summary  # it beats length by more than two standard errors
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 4  # two pairs, both orders


def test_a_reference_guided_judge_is_given_the_answer_and_judges_again_when_it_changes(tmp_path):
    class Recorder:
        model = cache_id = "recorder"

        def __init__(self, answers):
            self.reference_answers = ReferenceAnswers(answers)
            self.seen = []

        def judge(self, instruction, first, second, reference=None):
            self.seen.append(reference)
            return {"p_first": 0.7}

        def first_probability(self, row):
            return row["p_first"]

    cache = tmp_path / "cache.jsonl"
    question = "What is the capital of France?"
    first = Recorder(REFERENCES)
    judge_instructions({question: "Paris."}, {question: "Lyon."}, first, cache)
    assert first.seen == [REFERENCES[question]] * 2
    again = Recorder(REFERENCES)
    judge_instructions({question: "Paris."}, {question: "Lyon."}, again, cache)
    assert again.seen == []  # from the cache
    changed = Recorder({question: "Paris, on the Seine."})
    judge_instructions({question: "Paris."}, {question: "Lyon."}, changed, cache)
    assert changed.seen == ["Paris, on the Seine."] * 2


def test_symmetric_fit_recovers_its_weights_and_swapping_the_replies_flips_the_probability():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 2))
    truth = np.array([2.0, -1.0])
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ truth)))).astype(float)
    w = fit_symmetric_logistic(x, y)
    assert w == pytest.approx(truth, abs=0.15)
    recipe = JudgeRecipe("test", {"similarity": 5.0, "length": 0.5}, "chrf1")
    judge = ReferenceJudge(recipe, ReferenceAnswers(REFERENCES))
    question, reference = "Name a primary colour.", REFERENCES["Name a primary colour."]
    ab = judge.judge(question, OURS[question], THEIRS[question], reference=reference)["p_first"]
    ba = judge.judge(question, THEIRS[question], OURS[question], reference=reference)["p_first"]
    assert ab + ba == pytest.approx(1.0)
    # the LLM feature: a judge that always says 0.9 for the first reply has no opinion once both orders count
    assert llm_feature(0.9, 0.9) == pytest.approx(0.0)
    assert llm_feature(0.9, 0.1) == pytest.approx(math.log(9))


def test_mt_bench_reference_form_shows_the_reference_before_both_answers():
    form = get_form("mt_bench_reference")
    user = form.messages(form.questions[0], "Q?", "first {x}", "second", "REF")[1]["content"]
    assert user.index("REF") < user.index("first {x}") < user.index("second")
    assert "[The Start of Reference Answer]" in user and form.identifiers == ("A", "B")
    with pytest.raises(UserError, match="needs reference answers"):
        form.messages(form.questions[0], "Q?", "a", "b")
    assert parse_verdict("Both are fine, but [[B]]") == 0.0 and parse_verdict("[[A]]") == 1.0
    assert parse_verdict("[[C]]") == 0.5 and parse_verdict("A") is None


def test_an_endpoint_judge_with_reference_answers_is_sent_the_reference_prompt(monkeypatch):
    judge = OpenAIJudge("http://127.0.0.1:9/v1", "judge", reference_answers=ReferenceAnswers(REFERENCES))
    sent = []
    monkeypatch.setattr(judge, "complete", lambda messages: sent.append(messages) or "[[A]]")
    row = judge.judge("Q?", "one", "two", reference="the answer")
    assert "the answer" in sent[0][1]["content"] and judge.first_probability(row) == 1.0
    assert judge.cache_id != OpenAIJudge("http://127.0.0.1:9/v1", "judge").cache_id


def test_winrate_cli_with_reference_answers_defaults_to_the_validated_judge(tmp_path):
    outputs = _write(tmp_path / "ours.jsonl", [{"instruction": q, "output": a} for q, a in OURS.items()])
    theirs = _write(tmp_path / "theirs.jsonl", [{"instruction": q, "output": a} for q, a in THEIRS.items()])
    answers = _write(tmp_path / "answers.jsonl", [{"instruction": q, "output": a} for q, a in REFERENCES.items()])
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "winrate",
            "--outputs",
            str(outputs),
            "--reference",
            str(theirs),
            "--reference-answers",
            str(answers),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["judge"].startswith(DEFAULT_REFERENCE_JUDGE) and summary["no_reference_answer"] == 1
    assert summary["scored"] == 2 and summary["reference_answers"] == str(answers)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--judge", "chrf1"], "give --reference-answers FILE"),
        (["--reference-answers", "missing.jsonl"], "no such file"),
        (
            ["--reference-answers", "{answers}", "--judge-prompt-form", "direct", "--judge", "smollm2-135m-instruct"],
            "does not show a reference answer",
        ),
        (["--reference-answers", "{unrelated}"], "none of its 3 instructions has a reference answer"),
    ],
)
def test_bad_reference_options_are_one_line(tmp_path, extra, message):
    outputs = _write(tmp_path / "ours.jsonl", [{"instruction": q, "output": a} for q, a in OURS.items()])
    answers = _write(tmp_path / "answers.jsonl", [{"instruction": q, "output": a} for q, a in REFERENCES.items()])
    unrelated = _write(tmp_path / "unrelated.jsonl", [{"instruction": "Something else?", "output": "Yes."}])
    extra = [e.format(answers=answers, unrelated=unrelated) for e in extra]
    result = CliRunner().invoke(
        cli, ["eval", "winrate", "--outputs", str(outputs), "--reference", str(outputs), *extra]
    )
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_agreement_script_validates_every_reference_judge_out_of_sample_on_tiny_dev_sets(tmp_path):
    rng = np.random.default_rng(1)
    words = "paris red blue green capital france colour river city the a of is".split()
    data, answers = tmp_path / "dev", {}
    data.mkdir()
    for name in ("one", "two"):
        rows = []
        for i in range(30):
            question = f"{name} question {i}?"
            answers[question] = " ".join(rng.choice(words, 12))
            close = answers[question] + " indeed"
            far = " ".join(rng.choice(words, int(rng.integers(3, 30))))
            gpt4_prefers_close = rng.random() < 0.8
            swap = bool(rng.integers(2))
            rows.append(
                {
                    "instruction": question,
                    "output_1": far if swap else close,
                    "output_2": close if swap else far,
                    "preference": (2 if swap else 1) if gpt4_prefers_close else (1 if swap else 2),
                }
            )
        _write(data / f"{name}.jsonl", rows)
    answer_file = _write(tmp_path / "answers.jsonl", [{"instruction": q, "output": a} for q, a in answers.items()])
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "judge_agreement.py"),
            "--reference-judges",
            "--data",
            str(data),
            "--reference-answers",
            str(answer_file),
            "--llm-cache",
            str(tmp_path / "none.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    by_name = {line["judge"]: line for line in lines}
    assert set(by_name) == {"longer output wins"} | {n for n, r in REFERENCE_JUDGES.items() if not r.needs_llm}
    chrf1 = by_name["chrf1"]
    assert chrf1["pairs"] == 60 and chrf1["covers_all_pairs"] and set(chrf1["by_file"]) == {"one", "two"}
    assert chrf1["agreement"] > 0.65 and chrf1["difference_vs_length_se"] > 0
    assert chrf1["difference_vs_length"] == pytest.approx(chrf1["agreement"] - chrf1["length_baseline"], abs=1e-3)
    assert set(chrf1["weights_cross_fit"]) == {"fit_without_one", "fit_without_two"}


def test_models_judged_against_a_reference_model_with_reference_answers_as_compare_and_replication_do(tmp_path):
    from ijt_local.eval.judge import judge_against_references, make_judge

    answers = _write(tmp_path / "answers.jsonl", [{"instruction": q, "output": a} for q, a in REFERENCES.items()])
    judge = make_judge(None, None, None, reference_answers=answers)  # no --judge: the validated default
    generations = {
        name: [{"instruction": q, "output": a} for q, a in table.items()]
        for name, table in (("ours", OURS), ("theirs", THEIRS))
    }
    results = judge_against_references(judge, {"theirs": ["ours"]}, generations, tmp_path / "out")
    summary = results["theirs"]["ours"]
    assert summary["scored"] == 2 and summary["no_reference_answer"] == 1
    rows = [
        json.loads(line)
        for line in (tmp_path / "out" / "judgements" / "ours-vs-theirs.preferences.jsonl").read_text().splitlines()
    ]
    assert [bool(r.get("no_reference_answer")) for r in rows] == [False, False, True]


@pytest.mark.slow
def test_in_process_llm_judge_reads_the_reference_prompt_in_both_orders_then_from_cache(tmp_path):
    outputs = _write(tmp_path / "ours.jsonl", [{"instruction": q, "output": a} for q, a in OURS.items()])
    theirs = _write(tmp_path / "theirs.jsonl", [{"instruction": q, "output": a} for q, a in THEIRS.items()])
    answers = _write(tmp_path / "answers.jsonl", [{"instruction": q, "output": a} for q, a in REFERENCES.items()])
    args = [
        "eval",
        "winrate",
        "--outputs",
        str(outputs),
        "--reference",
        str(theirs),
        "--reference-answers",
        str(answers),
        "--judge",
        "smollm2-135m-instruct",
        "--out",
        str(tmp_path / "out"),
        "--threads",
        "1",
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["judge"].endswith("(mt_bench_reference)") and summary["no_reference_answer"] == 1
    cached = [json.loads(line) for line in (tmp_path / "out" / "judge-cache.jsonl").read_text().splitlines()]
    assert len(cached) == 4 and all(0 < c["p_first"] < 1 and c["mass"] > 0 for c in cached)
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and json.loads(second.output) == summary
    assert len((tmp_path / "out" / "judge-cache.jsonl").read_text().splitlines()) == 4
