"""Product of experts: log p(x) ∝ log p_model(x) + score_rules(x).

For decoding, adding the rule scores to the logits is exact (the sampler normalises), which is what
`Session.generate(rules=...)` does in place on llama.cpp's logits buffer. For scoring a given response
(likelihoods, ranking) the sum must be normalised per step: logit + score − logsumexp(logit + score).
"""

from __future__ import annotations

import numpy as np

from .expert import RuleExpert


def poe_logprob(logits: np.ndarray, scores: np.ndarray | None, target: int) -> float:
    """Normalised log-probability of `target` under the product of the model and the rule expert."""
    combined = logits.astype(np.float64)
    if scores is not None:
        combined += scores
    top = combined.max()
    return float(combined[target] - top - np.log(np.exp(combined - top).sum()))


class LogitsProcessor:
    """The rule expert as a llama-cpp-python `logits_processor`, for code that drives
    `Llama.create_completion` itself. (The Session's own loop is faster: this API hands over a
    strided copy per step.) One instance per generation: it tracks the response it has seen."""

    def __init__(self, expert: RuleExpert, prompt_length: int, instruction_tokens=()):
        self.state = expert.start(instruction_tokens)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        generated = len(input_ids) - self.prompt_length
        while self.state.n < generated:  # catch up on tokens sampled since the last call
            self.state.accept(int(input_ids[self.prompt_length + self.state.n]))
        scores = np.array(scores, dtype=np.float32)
        self.state.apply(scores)
        return scores
