"""Shared by the conversion tests and scripts/check_parity.py: run a GGUF in llama.cpp and an HF model in
torch on the same tokens, and compare."""

from __future__ import annotations

import contextlib

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
