"""Tiny models and adapters for the conversion tests, beside tests/tiny_models.py (llama, gemma3).

    make_tiny_qwen2(dir)              Qwen2 with q/k/v biases; SmolLM2's vocabulary behind Qwen2's
                                      pre-tokenizer regex, so the qwen2 pre-tokenizer is exercised too
    make_tiny_adapter(base_dir, dir)  a PEFT LoRA with random A and B (peft starts B at zero, which
                                      would make every adapter check trivially pass)
"""

from __future__ import annotations

import json
from pathlib import Path

from tiny_models import HIDDEN, LAYERS, load_tokenizer

from ijt_local.convert.vocab import QWEN2_PATTERN


def _qwen2_tokenizer(folder: Path):
    """SmolLM2's tokenizer.json with the Qwen2 Split + ByteLevel(use_regex=False) pre-tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = load_tokenizer()
    tokenizer.save_pretrained(folder)
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text())
    data["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    }
    path.write_text(json.dumps(data))
    return AutoTokenizer.from_pretrained(folder)


def make_tiny_qwen2(folder, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _qwen2_tokenizer(folder)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=False,
        rope_theta=1000000.0, initializer_range=0.2, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # the default init leaves biases at zero; make them count
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0.0, 0.1)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def make_tiny_adapter(base_dir, folder, seed: int = 1, rank: int = 4, alpha: float = 8.0,
                      targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                      use_rslora: bool = False, std: float = 0.2) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0,
                        init_lora_weights=False, use_rslora=use_rslora, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, std)
    peft_model.save_pretrained(folder, safe_serialization=True)
    return Path(folder)
