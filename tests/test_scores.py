"""The request scores beside the rules (runtime/scores.py): logit_bias, presence and frequency penalties,
added in place in the product; and the grammar's mask as scores of 0 and −∞ (runtime/grammar.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ijt_local.runtime.grammar import _BYTE_SCORES
from ijt_local.runtime.scores import MAX_BIAS, RequestScores, product_state


class CountingRules:
    """A stand-in rule state: +1 on token 0, and the tokens it was given."""

    def __init__(self):
        self.taken = []

    def apply(self, logits):
        logits[0] += 1.0

    def accept(self, token):
        self.taken.append(token)


def test_no_scores_leave_the_rule_state_alone():
    rules = CountingRules()
    assert product_state(rules, None) is rules
    assert product_state(None, RequestScores.make()) is None
    assert RequestScores.make({}, 0.0, 0.0) is None


def test_bias_is_clamped_and_added_beside_the_rules():
    scores = RequestScores.make({3: 250.0, 5: -1000.0, 7: 2.5})
    assert dict(scores.logit_bias) == {3: MAX_BIAS, 5: -MAX_BIAS, 7: 2.5}
    rules = CountingRules()
    state = product_state(rules, scores)
    logits = np.zeros(10, dtype=np.float32)
    state.apply(logits)
    assert logits.tolist() == [1.0, 0, 0, 100.0, 0, -100.0, 0, 2.5, 0, 0]
    state.accept(4)
    assert rules.taken == [4]


def test_presence_and_frequency_penalties_follow_the_reply():
    state = product_state(None, RequestScores.make(presence_penalty=0.5, frequency_penalty=0.25))
    for token in (2, 2, 2, 6):
        state.accept(token)
    logits = np.zeros(8, dtype=np.float32)
    state.apply(logits)
    # OpenAI's: logit - frequency x count - presence x (count > 0)
    assert logits[2] == pytest.approx(-(0.5 + 3 * 0.25))
    assert logits[6] == pytest.approx(-(0.5 + 0.25))
    assert logits[[0, 1, 3, 4, 5, 7]].tolist() == [0.0] * 6


def test_a_bitmask_becomes_zero_or_minus_infinity_per_token():
    rng = np.random.default_rng(0)
    allowed = rng.random(96) < 0.3
    mask = np.packbits(allowed, bitorder="little").view(np.int32)
    scores = np.take(_BYTE_SCORES, mask.view(np.uint8), axis=0).reshape(-1)
    assert np.array_equal(np.isfinite(scores), allowed)
    assert (scores[allowed] == 0).all()
