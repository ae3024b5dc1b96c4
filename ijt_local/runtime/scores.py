"""The scores a request adds to the product beside the rules: OpenAI's `logit_bias`, `presence_penalty` and
`frequency_penalty`, and a grammar (a hard expert, ijt_local/runtime/grammar.py).

    logits + rule scores + bias + penalties + grammar (0 or −∞)

all added in place to the sequence's logits row, in that order, before the token is chosen (argmax, or
llama.cpp's sampler chain, whose top-k, top-p and min-p then cut the product's distribution). Each part
is per sequence and follows only its own tokens, so a reply stays the same at any batch width.

`RequestScores` is what a request asks for (shared, immutable); `ProductState` is one sequence's state: it
stands where a RuleState stands in the decode loops (`apply(logits)` before the choice, `accept(token)`
after), and is only made when a request asks for more than the rules, so plain and rules-only decoding
run exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grammar import Grammar, GrammarState

MAX_BIAS = 100.0  # OpenAI clamps logit_bias values to [-100, 100]
MAX_PENALTY = 2.0  # OpenAI's range for presence_penalty and frequency_penalty is [-2, 2]


@dataclass(frozen=True)
class RequestScores:
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias), the bias clamped to ±MAX_BIAS
    presence_penalty: float = 0.0  # subtracted once from every token already in the reply
    frequency_penalty: float = 0.0  # subtracted per occurrence of a token in the reply
    grammar: Grammar | None = None

    @classmethod
    def make(
        cls,
        logit_bias: dict[int, float] | None = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        grammar: Grammar | None = None,
    ) -> RequestScores | None:
        """The scores, or None when they add nothing (the decode loops then run the rules alone)."""
        bias = tuple(
            (int(token), float(np.clip(value, -MAX_BIAS, MAX_BIAS))) for token, value in (logit_bias or {}).items()
        )
        scores = cls(bias, float(presence_penalty), float(frequency_penalty), grammar)
        return scores if scores.active else None

    @property
    def active(self) -> bool:
        return bool(self.logit_bias or self.presence_penalty or self.frequency_penalty or self.grammar)

    def start(self, rules) -> ProductState:
        """One sequence's state, around its rule state (None without rules)."""
        return ProductState(self, rules)


class ProductState:
    """A sequence's rule state and request scores, applied as one expert."""

    def __init__(self, scores: RequestScores, rules):
        self.rules = rules
        self.bias_ids = np.array([token for token, _ in scores.logit_bias], dtype=np.int64)
        self.bias_values = np.array([value for _, value in scores.logit_bias], dtype=np.float32)
        self.presence, self.frequency = scores.presence_penalty, scores.frequency_penalty
        self.places: dict[int, int] = {}  # each reply token so far -> its place in penalty_ids
        self.penalty_ids = np.empty(0, dtype=np.int64)
        self.penalty_values = np.empty(0, dtype=np.float32)
        self.grammar: GrammarState | None = scores.grammar.start() if scores.grammar is not None else None

    @property
    def note(self) -> str | None:
        """Why the reply ended early, when the grammar admitted nothing; else None."""
        return self.grammar.note if self.grammar is not None else None

    def apply(self, logits: np.ndarray) -> None:
        if self.rules is not None:
            self.rules.apply(logits)
        if len(self.bias_ids):
            logits[self.bias_ids] += self.bias_values
        if len(self.penalty_ids):
            logits[self.penalty_ids] -= self.penalty_values
        if self.grammar is not None:
            self.grammar.apply(logits)

    def accept(self, token: int) -> None:
        if self.rules is not None:
            self.rules.accept(token)
        if self.presence or self.frequency:
            place = self.places.get(token)
            if place is None:
                self.places[token] = len(self.penalty_ids)
                self.penalty_ids = np.append(self.penalty_ids, token)
                self.penalty_values = np.append(self.penalty_values, np.float32(self.presence + self.frequency))
            else:
                self.penalty_values[place] += self.frequency
        if self.grammar is not None:
            self.grammar.accept(token)


def product_state(rule_state, scores: RequestScores | None):
    """The expert of one sequence: its rule state alone (or None) when the request adds no scores."""
    if scores is None or not scores.active:
        return rule_state
    return scores.start(rule_state)
