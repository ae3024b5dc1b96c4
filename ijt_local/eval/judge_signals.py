"""What a judge's preferences follow.

A weak judge's win rates need a reading: does it prefer the reply that answers, or one with some surface
property? Over judged pairs, this correlates (Pearson) each pair's position-free preference
(winrate_stats.position_free_preference) with how the reply differs from the reference in properties the
behaviour metrics already measure:

    repetition  repetition(reply) - repetition(reference)            (metrics.repetition, 0..1)
    echo        is_echo(reply) - is_echo(reference)                  (restates the instruction: -1, 0, 1)
    length      log(characters(reply) / characters(reference))

A judge that reads answers punishes echoes (a restated instruction answers nothing); one that counts
characters follows length. Per model, `echo_split` compares its echoing replies with the others, and
`at_equal_repetition` gives its win rate over the pairs whose two replies repeat about equally: what the
judge prefers once repetition cannot decide. Pairs judged in one order only, or with identical replies,
are left out.
"""

from __future__ import annotations

import math

import numpy as np

from .metrics import is_echo, repetition
from .winrate_stats import judged_both_ways, mean_and_standard_error, position_free_preference

SIGNALS = ("repetition", "echo", "length")
EQUAL_REPETITION = 0.1  # |repetition(reply) - repetition(reference)| below this counts as equal


def reply_differences(instruction: str, reply: str, reference: str) -> dict[str, float]:
    return {
        "repetition": repetition(reply) - repetition(reference),
        "echo": float(is_echo(instruction, reply)) - float(is_echo(instruction, reference)),
        "length": math.log((len(reply) + 1) / (len(reference) + 1)),
    }


def _judged_both_ways(pairs: list[tuple[dict, str, str]]):
    for row, reply, reference in pairs:
        if judged_both_ways(row):
            yield position_free_preference(row["output_first"], row["reference_first"])[0], row, reply, reference


def preference_correlates(pairs: list[tuple[dict, str, str]]) -> dict:
    """`pairs`: (preference row of judge_instructions, the reply, the reference reply). Returns the number
    of pairs used and, per signal, its correlation with the position-free preference (None when the
    signal or the preference does not vary)."""
    preferences, differences = [], []
    for preference, row, reply, reference in _judged_both_ways(pairs):
        preferences.append(preference)
        differences.append(reply_differences(row["instruction"], reply, reference))
    result: dict = {"pairs": len(preferences)}
    y = np.asarray(preferences)
    for signal in SIGNALS:
        x = np.asarray([d[signal] for d in differences])
        varies = len(y) > 2 and x.std() > 0 and y.std() > 0
        result[signal] = float(np.corrcoef(x, y)[0, 1]) if varies else None
    return result


def echo_split(pairs: list[tuple[dict, str, str]]) -> dict:
    """Position-free win rate of the replies that restate the instruction and of those that do not, among
    pairs whose reference does not: within one model, a judge that reads answers scores the first lower."""
    split: dict[str, list[float]] = {"echo": [], "no_echo": []}
    for preference, row, reply, reference in _judged_both_ways(pairs):
        if not is_echo(row["instruction"], reference):
            split["echo" if is_echo(row["instruction"], reply) else "no_echo"].append(preference)
    return {
        kind: {"pairs": len(values), "position_free_win_rate": float(np.mean(values)) if values else None}
        for kind, values in split.items()
    }


def at_equal_repetition(pairs: list[tuple[dict, str, str]], tolerance: float = EQUAL_REPETITION) -> dict:
    """Position-free win rate, with its standard error, over the pairs whose reply and reference repeat
    within `tolerance` of each other. A matched comparison: each model's pairs are its own subset (for a
    model that loops, the instructions where the reference loops too), so read it beside the overall
    rate, not as a ranking."""
    values = [
        preference
        for preference, row, reply, reference in _judged_both_ways(pairs)
        if abs(repetition(reply) - repetition(reference)) < tolerance
    ]
    mean, standard_error = mean_and_standard_error(values)
    return {"pairs": len(values), "position_free_win_rate": mean, "standard_error": standard_error}
