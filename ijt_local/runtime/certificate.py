"""`ijt-local check invariance`: prove on this machine that a reply does not depend on its batch.

The probe (row_probe.py) measures which row counts agree; this checks the consequence end to end, in the
manner of SGLang's deterministic-mode test: the same prompts decoded at widths 1, 2, 3, 8, 16 and 32, each
width in its own shuffled order, some prompts sharing a long prefix, all of them beside filler prompts of
other lengths, greedy and seeded-sampled. A prompt passes when it got one reply in all those runs. It
also reports how many replies the one-row path (`--fast`) shares with them, which is informational: that
path makes no promise.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..rules.expert import RuleConfig
from .batch import generate_all
from .session import SamplingParams, Session

WIDTHS = (1, 2, 3, 8, 16, 32)
SEEDED = SamplingParams(temperature=0.8, top_p=0.95, seed=7)

PROMPTS = [
    "Give three tips for staying healthy.",
    "Explain why the sky is blue to a ten-year-old.",
    "Write a haiku about a lighthouse in winter.",
    "What is the difference between a list and a tuple in Python?",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "How do I make a cup of green tea?",
    "Name four planets and one fact about each.",
    "Translate 'good morning, how are you?' into French and Spanish.",
]
SHARED_PREFIX = (
    "You are helping a student who is preparing for an exam in environmental science next week. "
    "Answer briefly and clearly, with one concrete example. Question: "
)
SHARED_QUESTIONS = [
    "What causes acid rain?",
    "Why do coral reefs bleach?",
    "How does composting reduce waste?",
    "What is a carbon sink?",
]
FILLERS = [
    "Hi.",
    "List the days of the week, then the months of the year, then the four seasons, each in order.",
    "Describe a busy train station at rush hour in vivid detail, with sounds, smells and people.",
    "Count from one to twenty in words.",
]


@dataclass
class Check:
    mode: str  # "greedy" or "seeded"
    replies: dict[int, set[str]] = field(default_factory=dict)  # prompt index -> distinct replies
    fast_matches: int = 0  # prompts whose one-row (--fast) reply equals the batched one

    @property
    def unique(self) -> list[int]:
        return [len(self.replies[i]) for i in sorted(self.replies)]

    @property
    def passed(self) -> bool:
        return all(count == 1 for count in self.unique)


def certificate_prompts(count: int) -> list[str]:
    """`count` prompts: plain ones and ones sharing a long prefix, alternately."""
    shared = [SHARED_PREFIX + question for question in SHARED_QUESTIONS]
    mixed = [prompt for pair in zip(PROMPTS, shared + shared) for prompt in pair] + PROMPTS[len(shared) * 2 :]
    return mixed[:count]


def check_invariance(
    session: Session,
    prompts: list[str],
    rules: RuleConfig | None,
    max_tokens: int,
    widths: tuple[int, ...] = WIDTHS,
    on_run: Callable[[str, int], None] | None = None,
) -> list[Check]:
    """One Check per sampling mode: every prompt decoded at every width (width 1 alone, wider ones
    shuffled among the fillers), plus once through the one-row path."""
    conversations = [[{"role": "user", "content": text}] for text in prompts + FILLERS]
    checks = []
    for mode, sampling in (("greedy", SamplingParams()), ("seeded", SEEDED)):
        check = Check(mode, {i: set() for i in range(len(prompts))})
        options = dict(rules=rules, max_tokens=max_tokens, sampling=sampling)
        for width in widths:
            if on_run is not None:
                on_run(mode, width)
            order = list(range(len(prompts) if width == 1 else len(conversations)))
            random.Random(f"{mode}-{width}").shuffle(order)
            batch = [conversations[i] for i in order]
            for k, generation in generate_all(session, batch, width, exact=True, **options):
                if order[k] < len(prompts):
                    check.replies[order[k]].add(generation.text)
        if on_run is not None:
            on_run(mode, 0)
        for i, generation in generate_all(session, conversations[: len(prompts)], 1, exact=False, **options):
            check.fast_matches += check.replies[i] == {generation.text}
        checks.append(check)
    return checks
