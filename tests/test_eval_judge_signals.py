"""What a judge's preferences follow: correlations of position-free preferences with reply properties."""

import math
import random

import pytest

from ijt_local.eval.judge_signals import at_equal_repetition, echo_split, preference_correlates, reply_differences

INSTRUCTION = "Explain why the sky is blue during the day"
ANSWER = "Sunlight is scattered by the molecules of the air, and blue light is scattered the most."
ECHO = "Explain why the sky is blue during the day. " + ANSWER
LOOP = "the sky is blue " * 20
ECHO_LOOP = INSTRUCTION + ". " + LOOP


def _row(quality: float, bias: float = -2.0) -> dict:
    """A preference row whose two orders come from a judge that sees `quality` (log-odds of the reply
    winning) and adds a strong position bias, as the 1.5B judge does."""

    def probability(log_odds: float) -> float:
        return 1.0 / (1.0 + math.exp(-log_odds))

    return {
        "instruction": INSTRUCTION,
        "identical": False,
        "output_first": probability(quality + bias),
        "reference_first": probability(quality - bias),
    }


def test_reply_differences_measure_the_reply_against_the_reference():
    differences = reply_differences(INSTRUCTION, LOOP, ANSWER)
    assert differences["repetition"] > 0.5
    assert differences["echo"] == 0.0
    assert differences["length"] == pytest.approx(math.log((len(LOOP) + 1) / (len(ANSWER) + 1)))
    assert reply_differences(INSTRUCTION, ECHO, ANSWER)["echo"] == 1.0


def test_a_judge_that_punishes_repetition_but_not_echo_shows_it_in_the_correlations():
    rng = random.Random(0)
    pairs = []
    for i in range(60):
        reply = [ANSWER, ECHO, LOOP, ECHO_LOOP][i % 4]  # echo and repetition independent of each other
        quality = (-2.0 if LOOP in reply else 1.0) + rng.gauss(0, 0.3)
        pairs.append((_row(quality), reply, ANSWER))
    found = preference_correlates(pairs)
    assert found["pairs"] == 60
    assert found["repetition"] < -0.9
    assert abs(found["echo"]) < 0.3


def test_pairs_judged_in_one_order_or_identical_are_left_out_and_a_constant_signal_has_no_correlation():
    pairs = [(_row(q), ANSWER, ANSWER + " More." * k) for k, q in enumerate([0.5, -0.5, 1.0, 0.0])]
    pairs.append(({**_row(3.0), "reference_first": None}, LOOP, ANSWER))
    pairs.append(({**_row(3.0), "identical": True}, ANSWER, ANSWER))
    found = preference_correlates(pairs)
    assert found["pairs"] == 4
    assert found["echo"] is None  # no reply echoes: the signal does not vary
    assert found["length"] is not None


def test_echo_split_compares_echoing_replies_with_the_others_against_references_that_do_not_echo():
    pairs = [
        (_row(-1.0), ECHO, ANSWER),
        (_row(-1.0), ECHO, ANSWER),
        (_row(1.0), ANSWER, LOOP),
        (_row(3.0), ANSWER, ECHO),
    ]  # the last has an echoing reference: left out
    split = echo_split(pairs)
    assert split["echo"]["pairs"] == 2 and split["no_echo"]["pairs"] == 1
    assert split["echo"]["position_free_win_rate"] == pytest.approx(1 / (1 + math.exp(1.0)))
    assert split["no_echo"]["position_free_win_rate"] == pytest.approx(1 / (1 + math.exp(-1.0)))


def test_at_equal_repetition_shows_what_the_judge_prefers_once_repetition_cannot_decide():
    # a judge that prefers every non-looping reply to a loop, but prefers the reference when neither loops
    other = "Air molecules scatter short wavelengths of sunlight more strongly than long ones."
    pairs = [(_row(2.0), ANSWER, LOOP)] * 6 + [
        (_row(-0.5), ANSWER, other),
        (_row(-0.7), ECHO, other),
        (_row(-0.3), ANSWER, other),
    ]
    overall = sum(1 / (1 + math.exp(-q)) for q in [2.0] * 6 + [-0.5, -0.7, -0.3]) / 9
    assert overall > 0.6  # the loops carry the overall rate above 50 %
    matched = at_equal_repetition(pairs)
    assert matched["pairs"] == 3
    expected = [1 / (1 + math.exp(-q)) for q in (-0.5, -0.7, -0.3)]
    assert matched["position_free_win_rate"] == pytest.approx(sum(expected) / 3)
    assert matched["position_free_win_rate"] < 0.5
    mean = sum(expected) / 3
    assert matched["standard_error"] == pytest.approx(math.sqrt(sum((e - mean) ** 2 for e in expected) / 2 / 3))
    assert at_equal_repetition(pairs[:6]) == {"pairs": 0, "position_free_win_rate": None, "standard_error": None}
