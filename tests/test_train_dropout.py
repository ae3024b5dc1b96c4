"""LaneDropout: nn.Dropout's distribution from 16-bit random lanes, and its place in a peft model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ijt_local.train.dropout import LANES, LaneDropout, use_lane_dropout  # noqa: E402


def test_keeps_one_minus_p_and_scales_the_kept_entries_to_keep_the_mean():
    dropout = LaneDropout(0.05).train()
    torch.manual_seed(0)
    x = torch.full((1 << 20,), 2.0)
    y = dropout(x)
    kept = y != 0
    share = kept.float().mean().item()
    assert abs(share - 0.95) < 4 * (0.95 * 0.05 / x.numel()) ** 0.5
    assert torch.all(y[kept] == 2.0 * dropout.scale)
    assert dropout.scale * round(0.95 * LANES) / LANES == pytest.approx(1.0, abs=1e-12)  # exact expectation
    assert y.mean().item() == pytest.approx(2.0, rel=2e-3)
    # every 16-bit lane of a 64-bit draw is used, none of them biased
    lanes = kept.view(-1, 4).float().mean(0)
    assert torch.all((lanes - 0.95).abs() < 0.003)


def test_same_seed_same_mask_and_eval_is_identity():
    dropout = LaneDropout(0.3).train()
    x = torch.randn(3, 5, 7, dtype=torch.bfloat16)
    torch.manual_seed(1)
    first = dropout(x)
    torch.manual_seed(1)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(dropout(x), first)  # the generator moved on
    assert first.shape == x.shape and first.dtype == torch.bfloat16
    assert dropout.eval()(x) is x
    assert LaneDropout(0.0).train()(x) is x


def test_gradient_is_the_scaled_mask():
    dropout = LaneDropout(0.5).train()
    x = torch.randn(4, 64, requires_grad=True)
    torch.manual_seed(2)
    y = dropout(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.equal(x.grad, kept.float() * dropout.scale)


def test_replaces_the_dropout_before_every_lora_layer(tmp_path):
    from peft import LoraConfig, get_peft_model
    from tiny_models import make_tiny_llama
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(make_tiny_llama(tmp_path))
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=targets))
    layers = model.config.num_hidden_layers
    assert use_lane_dropout(model) == len(targets) * layers
    kinds = {type(m).__name__ for m in model.modules() if isinstance(m, (LaneDropout, torch.nn.Dropout))}
    assert kinds == {"LaneDropout"}
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (2, 9))
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
