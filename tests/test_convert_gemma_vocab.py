"""The SentencePiece-style path on the real 262,144-token gemma vocabulary: a tiny gemma3 carrying
gemma's tokenizer converts, and llama.cpp then tokenizes like transformers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_models import cached_tokenizer_dir

from ijt_local.convert.hf_to_gguf import convert
from ijt_local.convert.parity import MIXED_CORPUS, llama_cpp_tokenize


def gemma_tokenizer_dir() -> Path:
    """gemma-3-270m's tokenizer as transformers reads it from the embedded GGUF, cached for later runs."""
    from ijt_local.models import embedded_gemma_path

    return cached_tokenizer_dir("gemma3-tokenizer", embedded_gemma_path())


@pytest.mark.slow
def test_gemma_vocabulary_tokenizes_like_transformers(tmp_path):
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    source = gemma_tokenizer_dir()
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=16,
        layer_types=["full_attention"],
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path / "gemma-vocab"
    Gemma3ForCausalLM(config).save_pretrained(folder)
    for path in source.iterdir():  # copying beats re-serialising a 33 MB tokenizer.json
        shutil.copy(path, folder / path.name)
    out = tmp_path / "gemma-vocab.gguf"
    summary = convert(folder, out, "f16", progress=False)
    assert summary["tokenizer"] == "llama" and summary["vocab"] == 262144
    corpus = MIXED_CORPUS + ["<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n", "ÿ\x00\x07 ￿"]
    got = llama_cpp_tokenize(out, corpus)
    want = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in corpus]
    assert got == want
    # with special tokens: gemma's BOS in front, as transformers adds it
    assert llama_cpp_tokenize(out, ["Hello"], add_special=True)[0] == tokenizer("Hello")["input_ids"]
