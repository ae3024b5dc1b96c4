"""Tiny models for the conversion tests, beside tests/tiny_models.py (llama, gemma3); random LoRA adapters
are convert/parity.py's random_lora_adapter.

make_tiny_qwen2(dir)              Qwen2 with q/k/v biases; SmolLM2's vocabulary behind Qwen2's
                                  pre-tokenizer regex, so the qwen2 pre-tokenizer is exercised too
make_tiny_olmo(dir)               OLMo (the paper's OLMo-7B-0424 layout: weightless LayerNorm, q/k/v
                                  clipping, untied head) behind a GPT-NeoX-style GPT-2 pre-tokenizer
make_tiny_olmo2(dir)              OLMo 2 (post-norms, whole-projection q/k norms) behind the
                                  cl100k / Llama 3 pre-tokenizer regex its tokenizer uses
"""

from __future__ import annotations

import json
from pathlib import Path

from tiny_models import HIDDEN, LAYERS, load_tokenizer

from ijt_local.convert.vocab import LLAMA3_PATTERN, QWEN2_PATTERN


def _tokenizer_with_pre_tokenizer(folder: Path, pre_tokenizer: dict):
    """SmolLM2's tokenizer.json with another pre-tokenizer (the vocabulary and merges stay)."""
    from transformers import AutoTokenizer

    tokenizer = load_tokenizer()
    tokenizer.save_pretrained(folder)
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text())
    data["pre_tokenizer"] = pre_tokenizer
    path.write_text(json.dumps(data))
    return AutoTokenizer.from_pretrained(folder)


def _split_then_bytes(pattern: str) -> dict:
    return {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    }


def _qwen2_tokenizer(folder: Path):
    return _tokenizer_with_pre_tokenizer(folder, _split_then_bytes(QWEN2_PATTERN))


def make_tiny_qwen2(folder, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _qwen2_tokenizer(folder)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        rope_theta=1000000.0,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # the default init leaves biases at zero; make them count
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0.0, 0.1)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _olmo_common(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )


def make_tiny_olmo(folder, seed: int = 0, clip_qkv: float | None = 2.0) -> Path:
    """clip_qkv 2.0 clamps a good share of the tiny model's q/k/v values, so the clamp is exercised."""
    import torch
    from transformers import OlmoConfig, OlmoForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gpt_neox_style = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = _tokenizer_with_pre_tokenizer(folder, gpt_neox_style)
    config = OlmoConfig(**_olmo_common(tokenizer), clip_qkv=clip_qkv, rope_theta=10000.0)
    torch.manual_seed(seed)
    OlmoForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return folder


def make_tiny_olmo2(folder, seed: int = 0) -> Path:
    import torch
    from transformers import Olmo2Config, Olmo2ForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer_with_pre_tokenizer(folder, _split_then_bytes(LLAMA3_PATTERN))
    config = Olmo2Config(**_olmo_common(tokenizer), rms_norm_eps=1e-6, rope_theta=500000.0)
    torch.manual_seed(seed)
    model = Olmo2ForCausalLM(config)
    with torch.no_grad():  # norms start at one; make them count
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


LLAMA2_STYLE_CORPUS = [
    "The quick brown fox jumps over the lazy dog. I think the answer is simple: write a poem about rain.",
    "Sure, here is a list of things you can do today. What should we do? Okay! We can go.",
    "Numbers like 1234 and 3.14 appear in text.\n\n- item one\n* star item\n## Heading\n# Title | table | row",
    "def f(x):\n    return x  # code with  two spaces and <tags>",
]


def make_llama2_style_tokenizer(folder, vocab_size: int = 700):
    """A SentencePiece-style BPE tokenizer.json laid out as Llama 2's: '▁' prepended and replacing spaces,
    byte fallback through the 256 <0xNN> tokens, <unk> <s> </s> at ids 0-2, no pre-tokenizer. Trained with
    the `tokenizers` library on a small corpus holding the rule expert's words."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    # merges stay inside words, as SentencePiece's do; Llama 2's tokenizer.json then has no pre-tokenizer
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(LLAMA2_STYLE_CORPUS * 20, trainer)
    tokenizer.pre_tokenizer = None
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(folder)
    data = json.loads((Path(folder) / "tokenizer.json").read_text())
    for added in data["added_tokens"]:  # the byte tokens are vocabulary, not special tokens, in Llama 2
        added["special"] = added["content"] in ("<unk>", "<s>", "</s>")
    data["added_tokens"] = [a for a in data["added_tokens"] if a["special"]]
    (Path(folder) / "tokenizer.json").write_text(json.dumps(data))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def make_tiny_llama_for(tokenizer, folder, seed: int = 0) -> Path:
    """A tiny llama whose embedding fits `tokenizer` (already saved in `folder`)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    return Path(folder)
