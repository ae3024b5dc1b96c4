"""Cross-entropy through the output head, on labelled positions only, a chunk of rows at a time.

With gemma's 262,144-token vocabulary the head is most of a step: full logits for a batch of 4 x 256
tokens are 1 GiB in float32, and autograd keeps several such tensors (logits, log-softmax, their grads).
Here only the hidden states of positions that carry a label go through the head, `chunk` rows at a time;
each chunk's gradient with respect to its hidden states (and the head weight, if that is trained) is
computed right away, so no logits outlive their chunk and backward is a multiply by the upstream grad.
"""

from __future__ import annotations

import torch

IGNORE = -100


def default_chunk(vocab_size: int, budget_bytes: int = 256 * 2**20) -> int:
    """Rows per chunk so that one chunk's float32 logits stay within `budget_bytes`. Every chunk streams
    the whole head weight through memory twice (forward, and the gradient for the hidden states), so
    fewer, larger chunks run faster; 256 MB (256 rows at gemma's 262k vocabulary) keeps 4 x 256 tokens at
    4 chunks while the peak stays well under full logits."""
    return max(16, budget_bytes // (4 * vocab_size))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, softcap, chunk):
        need_hidden_grad = ctx.needs_input_grad[0]
        need_weight_grad = ctx.needs_input_grad[1]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden_grad else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight_grad else None
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start:start + chunk]
            t = targets[start:start + chunk]
            logits = (h @ weight.T).float()
            if softcap:
                capped = torch.tanh(logits / softcap)
                logits = capped * softcap
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if need_hidden_grad or need_weight_grad:
                # d(lse - logit_t)/d logits = softmax - onehot(t), reusing the logits buffer in place.
                grad = logits.sub_(lse[:, None]).exp_()
                grad[torch.arange(t.shape[0], device=t.device), t] -= 1.0
                if softcap:
                    grad.mul_(1.0 - capped * capped)
                grad = grad.to(weight.dtype)
                if need_hidden_grad:
                    grad_hidden[start:start + chunk] = grad @ weight
                if need_weight_grad:
                    grad_weight += (grad.T @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_output.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_output).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None, None


def linear_cross_entropy_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                             softcap: float | None = None, chunk: int | None = None) -> torch.Tensor:
    """Sum over rows of -log softmax(hidden @ weight.T)[target]; hidden (N, H), weight (V, H), targets (N,)."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    chunk = chunk or default_chunk(weight.shape[0])
    return _LinearCrossEntropy.apply(hidden, weight, targets, softcap or 0.0, chunk)


def labelled_positions(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal shift and selection: hidden at t predicts labels at t+1; keep only rows with a label.
    hidden (B, T, H), labels (B, T) -> (N, H), (N,)."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    return hidden[:, :-1][keep], targets[keep]
