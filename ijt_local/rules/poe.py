"""Product of experts: log p(x) ∝ log p_model(x) + score_rules(x).

For decoding, adding the rule scores to the logits is exact (the sampler normalises), which is what the
decode loop (`BatchDecoder._choose` in runtime/batch.py) does in place on llama.cpp's logits buffer. For
scoring a given response (likelihoods, ranking) the sum must be normalised per step: logit + score −
logsumexp(logit + score).
"""

from __future__ import annotations

import numpy as np


def poe_logprob(logits: np.ndarray, scores: np.ndarray | None, target: int) -> float:
    """Normalised log-probability of `target` under the product of the model and the rule expert."""
    combined = logits.astype(np.float64)
    if scores is not None:
        combined += scores
    top = combined.max()
    return float(combined[target] - top - np.log(np.exp(combined - top).sum()))
