"""HF -> GGUF conversion on tiny random llama, qwen2, gemma3, olmo and olmo2 models: llama.cpp's logits and tokens
match transformers', every output type loads, the chat template and special tokens travel along."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_convert_models import make_tiny_olmo, make_tiny_olmo2, make_tiny_qwen2
from tiny_models import make_tiny_gemma3, make_tiny_llama

from ijt_local.convert.hf_to_gguf import convert
from ijt_local.convert.parity import MIXED_CORPUS, ggml_gelu, hf_logits, llama_cpp_logits, llama_cpp_tokenize

MAKERS = {
    "llama": make_tiny_llama,
    "qwen2": make_tiny_qwen2,
    "gemma3": make_tiny_gemma3,
    "olmo": make_tiny_olmo,
    "olmo2": make_tiny_olmo2,
}
# longer than the tiny gemma3's 16-token sliding window, so the local layers really slide
PARITY_TEXT = (
    "The quick brown fox jumps over the lazy dog; naïve café 🙂 def f(x): return x**2 "
    "and then 12345 more words to pass the window"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """{arch: (hf folder, f32 GGUF)} built once for the module."""
    root = tmp_path_factory.mktemp("tiny")
    built = {}
    for arch, make in MAKERS.items():
        folder = make(root / arch)
        gguf = root / f"{arch}-f32.gguf"
        convert(folder, gguf, "f32", progress=False)
        built[arch] = (folder, gguf)
    return built


def _hf(folder):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (
        AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(),
        AutoTokenizer.from_pretrained(folder),
    )


@pytest.mark.parametrize("arch", list(MAKERS))
def test_f32_logits_match_transformers(tiny, arch):
    folder, gguf = tiny[arch]
    model, tokenizer = _hf(folder)
    tokens = tokenizer(PARITY_TEXT)["input_ids"]
    assert len(tokens) > 32  # twice the tiny gemma3's sliding window
    got = llama_cpp_logits(gguf, tokens)
    if arch == "gemma3":
        exact = np.abs(got - hf_logits(model, tokens)).max()
        assert exact < 5e-3  # all of it from ggml's f16 GELU table, as the next line shows
        with ggml_gelu(model):
            want = hf_logits(model, tokens)
    else:
        want = hf_logits(model, tokens)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-3


@pytest.mark.parametrize("arch", list(MAKERS))
def test_tokenizer_matches_transformers_on_mixed_corpus(tiny, arch):
    folder, gguf = tiny[arch]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    corpus = MIXED_CORPUS + ["<|im_start|>user\nhi<|im_end|>\n<|endoftext|>"]
    got = llama_cpp_tokenize(gguf, corpus)
    want = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in corpus]
    assert got == want
    # and back to the same text
    assert tokenizer.decode(got[1]) == corpus[1]


def _metadata(path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {
        k: f.contents()
        for k, f in reader.fields.items()
        if not k.startswith("tokenizer.ggml.tokens")
        and k not in ("tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.scores")
    }, reader


def test_gemma3_metadata_and_norm_offset(tiny):
    folder, gguf_path = tiny["gemma3"]
    meta, reader = _metadata(gguf_path)
    assert meta["general.architecture"] == "gemma3"
    assert meta["gemma3.attention.sliding_window"] == 16
    assert list(meta["gemma3.attention.sliding_window_pattern"]) == [True, False]
    assert meta["gemma3.rope.freq_base"] == pytest.approx(1e6)
    assert meta["gemma3.rope.freq_base_swa"] == pytest.approx(1e4)
    assert meta["gemma3.attention.key_length"] == 16
    from safetensors.numpy import load_file

    weights = load_file(folder / "model.safetensors")
    stored = {t.name: np.array(t.data) for t in reader.tensors}
    # Gemma's RMSNorm scales by (1 + w): the +1 is baked in for llama.cpp
    np.testing.assert_allclose(
        stored["blk.0.attn_q_norm.weight"], weights["model.layers.0.self_attn.q_norm.weight"] + 1
    )
    np.testing.assert_allclose(stored["output_norm.weight"], weights["model.norm.weight"] + 1)
    assert "output.weight" not in stored  # tied embeddings


def test_chat_template_and_special_tokens(tiny):
    folder, gguf_path = tiny["llama"]
    meta, _ = _metadata(gguf_path)
    config = json.loads((folder / "config.json").read_text())
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "gpt-2"
    assert meta["tokenizer.ggml.eos_token_id"] == config["eos_token_id"]
    assert meta["tokenizer.ggml.bos_token_id"] == config["bos_token_id"]
    assert "message['role']" in meta["tokenizer.chat_template"]
    qwen_meta, _ = _metadata(tiny["qwen2"][1])
    assert qwen_meta["tokenizer.ggml.pre"] == "qwen2"
    assert "qwen2.attention.head_count_kv" in qwen_meta


def test_folder_without_template_gets_tulu(tmp_path, tiny):
    import shutil

    folder = tmp_path / "no-template"
    shutil.copytree(tiny["llama"][0], folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    out = tmp_path / "tulu.gguf"
    convert(folder, out, "f16", progress=False)
    meta, _ = _metadata(out)
    template = meta["tokenizer.chat_template"]
    from jinja2 import Template

    from ijt_local.prompts import TULU

    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Poem?"},
    ]
    rendered = Template(template).render(messages=messages, eos_token="</s>", add_generation_prompt=True)
    assert rendered == TULU.render(messages, eos="</s>")


# relative to the largest |logit|: f16 keeps 11 mantissa bits, bf16 8; with q8_0 weights llama.cpp also
# quantizes the activations to 8 bits, which this random model amplifies (see the exactness test below)
@pytest.mark.parametrize("outtype,tolerance", [("f16", 0.005), ("bf16", 0.04), ("q8_0", 0.15)])
def test_outtypes_load_and_stay_close(tiny, tmp_path, outtype, tolerance):
    import gguf

    folder, f32 = tiny["llama"]
    out = tmp_path / f"llama-{outtype}.gguf"
    summary = convert(folder, out, outtype, progress=False)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(out)).tensors}
    assert types["blk.0.attn_q.weight"] == outtype.upper()
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert summary["bytes"] < f32.stat().st_size
    model, tokenizer = _hf(folder)
    tokens = tokenizer(PARITY_TEXT)["input_ids"]
    want = hf_logits(model, tokens)
    relative = np.abs(llama_cpp_logits(out, tokens) - want).max() / np.abs(want).max()
    assert relative < tolerance


def test_q8_0_equals_llama_cpp_quantizing_the_f32_file(tiny, tmp_path):
    from ijt_local.convert.quantize import quantize_gguf

    folder, f32 = tiny["llama"]
    convert(folder, tmp_path / "ours.gguf", "q8_0", progress=False)
    quantize_gguf(f32, tmp_path / "theirs.gguf", "Q8_0")
    tokens = list(range(1, 40))
    assert np.array_equal(
        llama_cpp_logits(tmp_path / "ours.gguf", tokens), llama_cpp_logits(tmp_path / "theirs.gguf", tokens)
    )


def test_convert_then_quantize(tiny, tmp_path):
    import gguf

    folder, _ = tiny["gemma3"]
    out = tmp_path / "gemma3-q4km.gguf"
    summary = convert(folder, out, "f16", quantize="Q4_K_M", progress=False)
    assert summary["type"] == "Q4_K_M"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no intermediate left behind
    reader = gguf.GGUFReader(str(out))
    kinds = {t.tensor_type.name for t in reader.tensors}
    assert kinds & {"Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q8_0", "Q4_0", "Q5_1", "Q4_1", "IQ4_NL"}
    model, tokenizer = _hf(folder)
    tokens = tokenizer(PARITY_TEXT)["input_ids"]
    got = llama_cpp_logits(out, tokens)
    assert np.isfinite(got).all()
    # a 64-wide random model quantized to 4 bits keeps most of its argmax decisions
    agreement = (got.argmax(-1) == hf_logits(model, tokens).argmax(-1)).mean()
    assert agreement > 0.5


@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_streaming_in_row_blocks_writes_the_same_bytes(tiny, tmp_path, monkeypatch, outtype):
    """Large tensors (gemma's 262k-row embedding) are converted a block of rows at a time; force tiny
    blocks here and the file must not change."""
    from ijt_local.convert import hf_to_gguf

    folder, _ = tiny["gemma3"]
    whole, blocks = tmp_path / "whole.gguf", tmp_path / "blocks.gguf"
    convert(folder, whole, outtype, progress=False)
    monkeypatch.setattr(hf_to_gguf, "ROW_BLOCK_BYTES", 4096)
    convert(folder, blocks, outtype, progress=False)
    assert whole.read_bytes() == blocks.read_bytes()
