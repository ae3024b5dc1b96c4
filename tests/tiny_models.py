"""Tiny randomly initialised llama and gemma3 models with a real tokenizer, for training/conversion tests.

    from tiny_models import make_tiny_llama, make_tiny_gemma3
    folder = make_tiny_llama(tmp_path / "llama")    # config.json, model.safetensors, tokenizer files

Both use SmolLM2's tokenizer (49,152 tokens, read from the embedded SmolLM2 GGUF): real merges and special
tokens, and a vocabulary small enough to keep the models at a few MB (hidden 64, 2 layers). Reading a
tokenizer out of a GGUF takes ~13 s, so it is built once and kept in a cache folder
($IJT_LOCAL_TEST_CACHE, default ~/.cache/ijt-local-test) for later sessions.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

HIDDEN = 64
LAYERS = 2
# With the usual 0.02 init a 64-wide model's logits stay within about +-1 and its layers barely touch the
# residual stream, so LoRA cannot make it memorise anything; a wider init can, in a few dozen steps.
INIT_STD = 0.2


def _cache() -> Path:
    root = os.environ.get("IJT_LOCAL_TEST_CACHE") or os.path.expanduser("~/.cache/ijt-local-test")
    return Path(root)


def cached_tokenizer_dir(name: str, gguf: Path) -> Path:
    """A saved copy (tokenizer.json etc.) of the tokenizer transformers reads out of `gguf`, built on first
    use and kept under the test cache as `name`."""
    target = _cache() / name
    if (target / "tokenizer.json").exists():
        return target
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_tokenizer_dir() -> Path:
    """SmolLM2's tokenizer, read from the embedded SmolLM2 GGUF."""
    from ijt_local.models import smollm2_instruct_path

    return cached_tokenizer_dir("smollm2-tokenizer", smollm2_instruct_path())


def load_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())


def _save(model, tokenizer, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def _common(tokenizer) -> dict:
    # SmolLM2 pads with its EOS; a model's padding_idx embedding row starts (and, tied and frozen, stays)
    # zero, so EOS could never win. Pad with <|endoftext|> instead, as gemma pads with its own <pad>.
    tokenizer.pad_token = "<|endoftext|>"
    pad = tokenizer.pad_token_id
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": pad,
        "initializer_range": INIT_STD,
    }


def make_tiny_llama(folder, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        **_common(tokenizer),
    )
    torch.manual_seed(seed)
    return _save(LlamaForCausalLM(config), tokenizer, folder)


def make_tiny_gemma3(folder, seed: int = 0) -> Path:
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = load_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=1024,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        query_pre_attn_scalar=16,
        tie_word_embeddings=True,
        **_common(tokenizer),
    )
    torch.manual_seed(seed)
    return _save(Gemma3ForCausalLM(config), tokenizer, folder)
