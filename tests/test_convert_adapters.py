"""merge and export-adapter on tiny models: the merged weights equal PEFT's, and a base GGUF + exported
GGUF adapter in llama.cpp gives the merged GGUF's logits and greedy text (llama, qwen2, gemma3)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_convert_models import make_tiny_olmo, make_tiny_qwen2
from tiny_models import make_tiny_gemma3, make_tiny_llama

from ijt_local.convert.export_adapter import export_adapter
from ijt_local.convert.hf_to_gguf import convert
from ijt_local.convert.merge import merge
from ijt_local.convert.parity import hf_logits, llama_cpp_greedy, llama_cpp_logits, random_lora_adapter

MAKERS = {"llama": make_tiny_llama, "qwen2": make_tiny_qwen2, "gemma3": make_tiny_gemma3, "olmo": make_tiny_olmo}
PROMPT = "<|user|>\nWrite a poem called Rain\n<|assistant|>\n"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """{arch: paths} for base folder, adapter, merged folder, base/merged f32 GGUFs, GGUF adapter."""
    root = tmp_path_factory.mktemp("adapters")
    built = {}
    for arch, make in MAKERS.items():
        base = make(root / f"{arch}-base")
        adapter = random_lora_adapter(base, root / f"{arch}-adapter", use_rslora=(arch == "qwen2"))
        merged = root / f"{arch}-merged"
        merge(str(base), adapter, merged)
        paths = {
            "base": base,
            "adapter": adapter,
            "merged": merged,
            "base_gguf": root / f"{arch}-base.gguf",
            "merged_gguf": root / f"{arch}-merged.gguf",
            "adapter_gguf": root / f"{arch}-lora.gguf",
        }
        convert(base, paths["base_gguf"], "f32", progress=False)
        convert(merged, paths["merged_gguf"], "f32", progress=False)
        paths["export"] = export_adapter(adapter, str(paths["base_gguf"]), paths["adapter_gguf"], "f32")
        built[arch] = paths
    return built


def _model(folder):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (
        AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(),
        AutoTokenizer.from_pretrained(folder),
    )


def test_merged_folder_equals_peft_model(pipeline):
    from peft import PeftModel

    paths = pipeline["llama"]
    merged, tokenizer = _model(paths["merged"])
    base, _ = _model(paths["base"])
    peft_model = PeftModel.from_pretrained(base, str(paths["adapter"])).eval()
    tokens = tokenizer(PROMPT)["input_ids"]
    want = hf_logits(peft_model, tokens)
    assert np.abs(hf_logits(merged, tokens) - want).max() < 1e-4
    plain_base, _ = _model(paths["base"])  # PeftModel injected its layers into `base` in place
    assert np.abs(hf_logits(plain_base, tokens) - want).max() > 1e-2  # the adapter changes something
    config = json.loads((paths["merged"] / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["ijt_local_merged"]["adapter"].endswith("llama-adapter")
    assert (paths["merged"] / "tokenizer.json").exists()


@pytest.mark.parametrize("arch", list(MAKERS))
def test_merged_gguf_matches_hf(pipeline, arch):
    paths = pipeline[arch]
    model, tokenizer = _model(paths["merged"])
    tokens = tokenizer(PROMPT)["input_ids"]
    got = llama_cpp_logits(paths["merged_gguf"], tokens)
    want = hf_logits(model, tokens)
    # gemma3 adds ggml's f16 GELU table on top (see test_convert); the others are f32 throughout
    assert np.abs(got - want).max() <= (5e-3 if arch == "gemma3" else 1e-3)


@pytest.mark.parametrize("arch", list(MAKERS))
def test_base_plus_gguf_adapter_equals_merged(pipeline, arch):
    paths = pipeline[arch]
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(paths["base"])(PROMPT)["input_ids"]
    merged_text, merged_logits = llama_cpp_greedy(paths["merged_gguf"], tokens)
    adapted_text, adapted_logits = llama_cpp_greedy(paths["base_gguf"], tokens, lora_path=paths["adapter_gguf"])
    base_text, base_logits = llama_cpp_greedy(paths["base_gguf"], tokens)
    assert adapted_text == merged_text
    assert np.abs(adapted_logits - merged_logits).max() < 1e-3
    assert np.abs(base_logits - merged_logits).max() > 1e-2  # the adapter is not a no-op
    assert paths["export"]["pairs"] == 2 * 7  # 7 target modules x 2 layers


def test_adapter_scale_zero_is_the_base(pipeline):
    paths = pipeline["llama"]
    tokens = list(range(5, 25))
    base = llama_cpp_logits(paths["base_gguf"], tokens)
    off = llama_cpp_logits(paths["base_gguf"], tokens, lora_path=paths["adapter_gguf"], lora_scale=0.0)
    assert np.abs(base - off).max() < 1e-5


def test_adapter_gguf_metadata(pipeline):
    import gguf

    paths = pipeline["qwen2"]
    reader = gguf.GGUFReader(str(paths["adapter_gguf"]))
    fields = {k: f.contents() for k, f in reader.fields.items()}
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "qwen2"
    # rsLoRA scales by alpha/sqrt(r); llama.cpp divides alpha by r, so alpha is stored times sqrt(r)
    assert fields["adapter.lora.alpha"] == pytest.approx(8.0 * 2.0)
    shapes = {t.name: list(t.shape) for t in reader.tensors}
    assert shapes["blk.0.attn_q.weight.lora_a"] == [64, 4]
    assert shapes["blk.0.attn_q.weight.lora_b"] == [4, 64]


def test_f16_adapter_stays_close(pipeline, tmp_path):
    paths = pipeline["llama"]
    f16 = tmp_path / "lora-f16.gguf"
    export_adapter(paths["adapter"], str(paths["base_gguf"]), f16)  # the default encoding
    assert f16.stat().st_size < paths["adapter_gguf"].stat().st_size
    tokens = list(range(5, 25))
    exact = llama_cpp_logits(paths["base_gguf"], tokens, lora_path=paths["adapter_gguf"])
    approx = llama_cpp_logits(paths["base_gguf"], tokens, lora_path=f16)
    assert np.abs(exact - approx).max() / np.abs(exact).max() < 5e-3


def test_merge_onto_a_gguf_base(pipeline, tmp_path, monkeypatch):
    """A base given as GGUF is dequantized by transformers (marked unsavable); merge still writes it."""
    monkeypatch.setenv("IJT_LOCAL_HOME", str(tmp_path / "home"))
    paths = pipeline["llama"]
    out = tmp_path / "merged-from-gguf"
    merge(str(paths["base_gguf"]), paths["adapter"], out)
    from_gguf, tokenizer = _model(out)
    reference, _ = _model(paths["merged"])
    tokens = tokenizer(PROMPT)["input_ids"]
    assert np.abs(hf_logits(from_gguf, tokens) - hf_logits(reference, tokens)).max() < 1e-3
