"""Win rate and length-controlled win rate from per-instruction preferences.

A preference is the probability (0..1) that OUTPUTS beats REFERENCE on one instruction. The win rate is
their mean, with the standard error sd / sqrt(n).

The length-controlled win rate follows AlpacaEval 2's idea in its simplest form: a logistic model of the
preference with an intercept and one length term,

    logit P(output wins) = b0 + b1 * tanh(d / sd(d)),     d = characters(output) - characters(reference),

fitted to the (soft) preferences by maximum likelihood (Newton / IRLS, a weak ridge so that a set of
all-wins still has a finite fit). Read at zero length difference, the model gives sigmoid(b0): the win
rate the judge would give if both replies had the same length. Its standard error is the sandwich
(robust) one, since soft preferences are not Bernoulli draws, carried through the sigmoid by the delta
method. AlpacaEval 2 also has per-instruction difficulty terms fitted across many models; with one pair
of models there is nothing to fit them on, so they are left out.
"""

from __future__ import annotations

import math

import numpy as np

RIDGE = 1e-4
CLIP = 1e-6  # probabilities of exactly 0 or 1 (parsed replies) become log-odds of about +-13.8


def logit(p: float) -> float:
    """log(p / (1 - p)), with p clipped away from 0 and 1."""
    p = min(max(p, CLIP), 1.0 - CLIP)
    return math.log(p / (1.0 - p))


def position_free_preference(output_first: float, reference_first: float) -> tuple[float, float]:
    """P(output beats reference) with the judge's position bias taken out, and that bias in log-odds.

    Model the judge's log-odds that the FIRST reply wins as quality difference + position bias b. Then
    logit(output_first) = d + b and logit(reference_first) = d - b (both given as P(output wins)), so
    d = their mean and b = half their difference. Averaging the two probabilities instead has the same
    sign as d but shrinks it toward 0.5 as |b| grows: a judge that nearly always picks one position gives
    order-averaged win rates within a few points of 50 % whatever it thinks of the replies."""
    first, second = logit(output_first), logit(reference_first)
    difference = (first + second) / 2
    return 1.0 / (1.0 + math.exp(-difference)), (first - second) / 2


def judged_both_ways(row: dict) -> bool:
    """A per-instruction preference row (judge.judge_instructions) whose replies differ and were judged in
    both orders, so position_free_preference can read it."""
    return not row.get("identical") and row["output_first"] is not None and row["reference_first"] is not None


def mean_and_standard_error(values: list[float]) -> tuple[float | None, float | None]:
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def length_feature(differences: np.ndarray) -> tuple[np.ndarray, float]:
    """tanh of the standardized length difference, and the scale (sd of the differences) used."""
    scale = float(np.std(differences))
    if scale == 0.0:
        return np.zeros_like(differences, dtype=np.float64), 0.0
    return np.tanh(differences / scale), scale


def length_controlled_win_rate(
    preferences: list[float], output_lengths: list[int], reference_lengths: list[int]
) -> dict:
    """Fit the logistic length model; the win rate at zero length difference with its standard error."""
    y = np.asarray(preferences, dtype=np.float64)
    n = len(y)
    if n < 3:
        return {
            "length_controlled_win_rate": None,
            "length_controlled_standard_error": None,
            "length_coefficient": None,
            "length_scale_chars": None,
        }
    x, scale = length_feature(
        np.asarray(output_lengths, dtype=np.float64) - np.asarray(reference_lengths, dtype=np.float64)
    )
    design = np.column_stack([np.ones(n), x])
    theta = np.zeros(2)
    for _ in range(100):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (y - p) - RIDGE * theta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + RIDGE * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = _sigmoid(design @ theta)
    hessian = design.T @ (design * (p * (1 - p))[:, None]) + RIDGE * np.eye(2)
    scores = design * (y - p)[:, None]
    bread = np.linalg.inv(hessian)
    covariance = bread @ (scores.T @ scores) @ bread * n / max(n - 2, 1)
    rate = float(_sigmoid(theta[0]))
    return {
        "length_controlled_win_rate": rate,
        "length_controlled_standard_error": rate * (1 - rate) * math.sqrt(max(covariance[0, 0], 0.0)),
        "length_coefficient": float(theta[1]),
        "length_scale_chars": scale,
    }
