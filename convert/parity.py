"""Parity between a GGUF in llama.cpp and its HF model in torch, on the same tokens: the helpers that the
conversion tests (tests/test_convert*.py) and scripts/check_parity.py share.

    MIXED_CORPUS         texts for tokenizer parity: unicode, code, whitespace runs, digits, special tokens
    llama_cpp_tokenize   llama.cpp's tokenization of texts with a GGUF's vocabulary
    llama_cpp_logits     llama.cpp's logits at every position (float32 KV cache), optionally with a LoRA
    llama_cpp_greedy     a greedy continuation in llama.cpp and its logits
    hf_logits            the HF model's logits at every position
    ggml_gelu            the HF model with ggml's float16 GELU table in place of exact GELU
    random_lora_adapter  a PEFT LoRA with random factors, to check adapter export against merging

llama_cpp, torch, transformers and peft are imported where used: the module itself needs numpy only.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

# unicode, code, whitespace runs, digits, special tokens written as text
MIXED_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "naïve café – Ünïcödé: 日本語のテキスト, emoji 🙂🚀, Ελληνικά, русский, עברית",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\tprint(fib(10))  # tabs\tand  spaces",
    "    leading spaces, trailing spaces    \n\n\n   \t  \n",
    "Numbers 1234567890 3.14159 1e-5 0x1F 2024-11-23 $1,000,000.00",
    "<|user|>\nWrite a poem called Rain\n<|assistant|>\n",
    "it's they're we'll I'd DON'T You've",
    "a" * 40 + " " + "ab " * 10,
    "x",
]


def llama_cpp_logits(gguf_path, tokens, lora_path=None, lora_scale=1.0, n_ctx=256):
    """Logits for every position, float32 KV cache (f16 would cost ~1e-3 on its own)."""
    import llama_cpp

    from ijt_local.runtime.llama import capture_llama_logs

    capture_llama_logs()
    kwargs = {"lora_path": str(lora_path), "lora_scale": lora_scale} if lora_path else {}
    llm = llama_cpp.Llama(
        str(gguf_path),
        n_ctx=n_ctx,
        logits_all=True,
        verbose=False,
        type_k=0,
        type_v=0,
        n_threads=2,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        **kwargs,
    )
    try:
        llm.eval(list(tokens))
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm.close()


def llama_cpp_tokenize(gguf_path, texts, add_special=False):
    import llama_cpp

    from ijt_local.runtime.llama import capture_llama_logs

    capture_llama_logs()
    llm = llama_cpp.Llama(str(gguf_path), vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(t.encode("utf-8"), add_bos=add_special, special=True) for t in texts]
    finally:
        llm.close()


@contextlib.contextmanager
def ggml_gelu(model):
    """ggml evaluates GELU through a float16 lookup table (input and output rounded to f16); gemma3's
    MLP in HF uses exact tanh-GELU. Inside this block the HF model rounds the same way. On the tiny test
    models that isolates conversion errors from the table; on a real model it does not, because the
    table's steps amplify any rounding difference (docs/parity.md)."""
    import torch
    import torch.nn.functional as F

    class F16TableGelu(torch.nn.Module):
        def forward(self, x):
            return F.gelu(x.half().to(x.dtype), approximate="tanh").half().to(x.dtype)

    layers = model.model.layers
    saved = [layer.mlp.act_fn for layer in layers]
    for layer in layers:
        layer.mlp.act_fn = F16TableGelu()
    try:
        yield model
    finally:
        for layer, act in zip(layers, saved):
            layer.mlp.act_fn = act


def hf_logits(model, tokens):
    import torch

    with torch.no_grad():
        return model(torch.tensor([list(tokens)])).logits[0].float().numpy()


def llama_cpp_greedy(gguf_path, prompt_tokens, steps=16, lora_path=None, lora_scale=1.0):
    """Greedy continuation (token ids) and the logits at every generated step."""
    import llama_cpp

    from ijt_local.runtime.llama import capture_llama_logs

    capture_llama_logs()
    kwargs = {"lora_path": str(lora_path), "lora_scale": lora_scale} if lora_path else {}
    llm = llama_cpp.Llama(
        str(gguf_path), n_ctx=256, logits_all=True, verbose=False, type_k=0, type_v=0, n_threads=2, **kwargs
    )
    try:
        llm.eval(list(prompt_tokens))
        generated, logits = [], []
        for _ in range(steps):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            logits.append(row)
            generated.append(int(row.argmax()))
            llm.eval([generated[-1]])
        return generated, np.stack(logits)
    finally:
        llm.close()


def random_lora_adapter(
    base_dir,
    folder,
    seed: int = 1,
    rank: int = 4,
    alpha: float = 8.0,
    targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    use_rslora: bool = False,
    std: float = 0.2,
) -> Path:
    """A PEFT LoRA on the HF model in `base_dir` with random A and B (normal, `std`), saved to `folder`:
    peft starts B at zero, which would make every adapter check trivially pass."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=list(targets),
        lora_dropout=0.0,
        init_lora_weights=False,
        use_rslora=use_rslora,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.normal_(0.0, std)
    peft_model.save_pretrained(folder, safe_serialization=True)
    return Path(folder)
