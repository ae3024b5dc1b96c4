"""token_logprobs: top-k and log-normaliser of a logits row against a full sort, and a chosen token's place
under the product and the base model (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from ijt_local.rules.poe import poe_logprob
from ijt_local.runtime.token_logprobs import distribution, observe

RNG = np.random.default_rng(0)
ROWS = {
    "normal": RNG.standard_normal(262144).astype(np.float32) * 3,
    "peaked": (RNG.standard_normal(262144) * 20).astype(np.float32),
    "flat": np.zeros(1000, np.float32),
    "ties": np.round(RNG.standard_normal(5000) * 2).astype(np.float32),
}


@pytest.mark.parametrize("name", list(ROWS))
@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_k_and_normaliser_equal_a_full_sort(name, k):
    row = ROWS[name]
    normaliser, top = distribution(row, k)
    expected = np.argsort(-row, kind="stable")[:k]  # ties in index order, as argmax takes them
    assert top.tokens == [int(t) for t in expected]
    wide = row.astype(np.float64)
    assert normaliser == pytest.approx(wide.max() + np.log(np.exp(wide - wide.max()).sum()), abs=1e-4)
    assert top.logprobs == pytest.approx([float(wide[t]) - normaliser for t in expected], abs=1e-4)
    assert distribution(row, 0)[1].tokens == []


def test_observe_reports_the_product_the_base_and_the_rule_score():
    base = ROWS["peaked"][:50000].copy()
    scores = np.zeros_like(base)
    first, second = np.argsort(-base)[:2]
    scores[second] = base[first] - base[second] + 3.0  # the rules lift the runner-up above the base's choice
    scores[7] = -5.0
    product = base + scores
    choice = observe(base, product, int(second), 3)
    assert choice.changed and choice.base_top.tokens[0] == first and choice.top.tokens[0] == second
    assert choice.rule_score == pytest.approx(float(scores[second]))
    assert choice.logprob == pytest.approx(poe_logprob(base, scores, int(second)), abs=1e-4)
    assert choice.base_logprob == pytest.approx(poe_logprob(base, None, int(second)), abs=1e-4)
    unchanged = observe(base, base + 0, int(first), 0)
    assert not unchanged.changed and unchanged.top.tokens == [] and unchanged.base_top.tokens == [int(first)]
    alone = observe(None, base, int(first), 2)
    assert alone.base_top is None and alone.base_logprob is None and not alone.changed
