"""Conversion checks on the two real models, one JSON line per check and a summary line at the end.

    python scripts/check_parity.py [--work DIR] [--only tokenizer,logits,roundtrip,adapter]

tokenizer   llama.cpp tokenization of our GGUF == the HF tokenizer, on a mixed corpus, for gemma-3-270m
            (262,144 tokens, SentencePiece-style) and SmolLM2-135M (49,152, byte-level BPE); also against
            the original GGUFs
logits      f32 GGUF in llama.cpp vs the HF model: max |Δlogit|. Stock ggml computes GELU through an f16
            lookup table, which moves gemma's logits by ~0.02 on its own; run this check under the exact-GELU
            build from scripts/build_exact_gelu_ggml.sh to see the conversion's own error (docs/parity.md)
roundtrip   embedded gemma Q4_K_M -> HF (dequantized) -> GGUF f16 -> Q4_K_M: f16 logits vs HF; perplexity
            of the new Q4_K_M within 3 % of the original Q4_K_M on a LIMA text sample
adapter     a random LoRA on gemma: merged f32 GGUF vs base f32 GGUF + exported GGUF adapter, greedy text
            and logits

HF folders come from ijt_local.train.base (the GGUFs dequantized by transformers, cached).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ijt_local.convert.parity import (
    MIXED_CORPUS,
    ggml_gelu,
    hf_logits,
    llama_cpp_greedy,
    llama_cpp_logits,
    llama_cpp_tokenize,
    random_lora_adapter,
)
from ijt_local.data.home import shared_data_path

LIMA = shared_data_path("lima/lima_data.jsonl")
RESULTS: list[dict] = []


def report(**row) -> None:
    RESULTS.append(row)
    print(json.dumps(row), flush=True)


def real_models() -> dict:
    from ijt_local.models import embedded_gemma_path, smollm2_instruct_path
    from ijt_local.train.base import base_folder

    return {
        "gemma-3-270m": {"gguf": embedded_gemma_path(), "hf": base_folder("default")[0]},
        "smollm2-135m": {"gguf": smollm2_instruct_path(), "hf": base_folder(str(smollm2_instruct_path()))[0]},
    }


def converted(name: str, hf: Path, work: Path, outtype: str) -> Path:
    from ijt_local.convert.hf_to_gguf import convert

    out = work / f"{name}-{outtype}.gguf"
    if not out.exists():
        started = time.perf_counter()
        convert(hf, out, outtype, progress=False)
        report(
            check="convert",
            model=name,
            outtype=outtype,
            seconds=round(time.perf_counter() - started, 1),
            mb=round(out.stat().st_size / 2**20, 1),
        )
    return out


def check_tokenizer(models: dict, work: Path) -> None:
    from transformers import AutoTokenizer

    corpus = MIXED_CORPUS + [
        "<start_of_turn>user\nhi<end_of_turn>\n<eos><bos><pad>",
        "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
        "\u00a0non-breaking\u2003em-space\u200bzero-width",
        "Tschüß! ¿Qué tal? Ça va? 中文 한국어 ไทย",
        "```python\nimport numpy as np\narr = np.zeros((3, 4), dtype=np.float32)\n```",
        "   \n\n\n\n\t\t\t    x    y",
    ]
    # and real text at some length: LIMA conversations (prose, code, markdown, lists, many languages)
    corpus += [m["content"] for line in LIMA.read_text().splitlines()[:300] for m in json.loads(line)["messages"]]
    for name, paths in models.items():
        tokenizer = AutoTokenizer.from_pretrained(paths["hf"])
        want = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in corpus]
        ours = llama_cpp_tokenize(converted(name, paths["hf"], work, "f16"), corpus)
        original = llama_cpp_tokenize(paths["gguf"], corpus)
        bad = [i for i, (a, b) in enumerate(zip(ours, want)) if a != b]
        report(
            check="tokenizer",
            model=name,
            texts=len(corpus),
            tokens=sum(map(len, want)),
            equal_to_hf=not bad,
            mismatched_texts=bad,
            # transformers' GGUF -> HF tokenizer is not always the original's (gemma: long runs of
            # spaces; SmolLM2: its digit pre-tokenizer), and the converter follows the HF tokenizer
            texts_differing_from_original_gguf=sum(a != b for a, b in zip(ours, original)),
        )


def _hf_model(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (
        AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(),
        AutoTokenizer.from_pretrained(folder),
    )


PROMPT = (
    "<|user|>\nExplain, in two short paragraphs, why the sky is blue and why sunsets are red.\n"
    "<|assistant|>\nSunlight is made of many colours. When it passes through the atmosphere,"
)


def check_logits(models: dict, work: Path) -> None:
    for name, paths in models.items():
        model, tokenizer = _hf_model(paths["hf"])
        tokens = tokenizer(PROMPT)["input_ids"]
        f32 = converted(name, paths["hf"], work, "f32")
        got = llama_cpp_logits(f32, tokens)
        want = hf_logits(model, tokens)
        row = {
            "check": "logits_f32",
            "model": name,
            "tokens": len(tokens),
            "max_abs_dlogit": float(np.abs(got - want).max()),
            "max_abs_logit": float(np.abs(want).max()),
            "argmax_agreement": float((got.argmax(-1) == want.argmax(-1)).mean()),
            # the first position attends only to itself: embeddings, norms and MLP without attention
            "max_abs_dlogit_first_position": float(np.abs(got[0] - want[0]).max()),
        }
        if model.config.model_type == "gemma3_text":
            import llama_cpp

            row["llama_cpp"] = str(Path(llama_cpp.__file__).parent)
            with ggml_gelu(model):
                with_table = hf_logits(model, tokens)
            row["max_abs_dlogit_ggml_gelu"] = float(np.abs(got - with_table).max())
            # the table is a step function: rounding noise alone (f32 vs f64) flips its steps, so with
            # the table no two correct implementations agree to 1e-3 on this model
            row["gelu_table_f32_vs_f64"] = _gelu_table_f32_vs_f64(paths["hf"], tokens, with_table)
        report(**row)
        del model


def _gelu_table_f32_vs_f64(folder: Path, tokens: list[int], f32_with_table: np.ndarray) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
    with ggml_gelu(model):
        f64_with_table = hf_logits(model, tokens)
    return float(np.abs(f32_with_table - f64_with_table).max())


def perplexity(gguf_path: Path, tokens: list[int], window: int = 512) -> float:
    """Perplexity over consecutive windows (each scored from its own start, BOS first)."""
    nll, count = 0.0, 0
    for start in range(0, len(tokens) - 1, window - 1):
        chunk = tokens[start : start + window]
        if len(chunk) < 2:
            break
        logits = llama_cpp_logits(gguf_path, chunk, n_ctx=window).astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        nll -= logprobs[np.arange(len(chunk) - 1), chunk[1:]].sum()
        count += len(chunk) - 1
    return float(np.exp(nll / count))


def lima_sample(tokenizer, n_tokens: int = 1536) -> list[int]:
    texts = []
    for line in LIMA.read_text().splitlines()[:40]:
        messages = json.loads(line)["messages"]
        texts.append(messages[-1]["content"])
    ids = tokenizer("\n\n".join(texts))["input_ids"]
    return ids[:n_tokens]


def check_roundtrip(models: dict, work: Path) -> None:
    from ijt_local.convert.quantize import quantize_gguf

    name, paths = "gemma-3-270m", models["gemma-3-270m"]
    model, tokenizer = _hf_model(paths["hf"])
    tokens = tokenizer(PROMPT)["input_ids"]
    f16 = converted(name, paths["hf"], work, "f16")
    got = llama_cpp_logits(f16, tokens)
    want = hf_logits(model, tokens)
    report(
        check="roundtrip_f16_logits",
        model=name,
        max_abs_dlogit=float(np.abs(got - want).max()),
        max_abs_logit=float(np.abs(want).max()),
        argmax_agreement=float((got.argmax(-1) == want.argmax(-1)).mean()),
    )
    del model
    requantized = work / f"{name}-roundtrip-Q4_K_M.gguf"
    quantize_gguf(f16, requantized, "Q4_K_M")
    sample = lima_sample(tokenizer)
    original = perplexity(paths["gguf"], sample)
    ours = perplexity(requantized, sample)
    f16_ppl = perplexity(f16, sample)
    report(
        check="roundtrip_perplexity",
        model=name,
        tokens=len(sample),
        original_q4_k_m=round(original, 4),
        roundtrip_q4_k_m=round(ours, 4),
        f16=round(f16_ppl, 4),
        relative_change=round(ours / original - 1, 4),
        within_3_percent=abs(ours / original - 1) <= 0.03,
        original_mb=round(paths["gguf"].stat().st_size / 2**20, 1),
        roundtrip_mb=round(requantized.stat().st_size / 2**20, 1),
    )


def check_adapter(models: dict, work: Path) -> None:
    from ijt_local.convert.export_adapter import export_adapter
    from ijt_local.convert.hf_to_gguf import convert
    from ijt_local.convert.merge import merge

    name, paths = "gemma-3-270m", models["gemma-3-270m"]
    adapter = work / "gemma-random-lora"
    if not (adapter / "adapter_model.safetensors").exists():
        # small random factors: a change of a few logits, like a trained adapter's, not a scrambled model
        random_lora_adapter(paths["hf"], adapter, rank=8, alpha=16.0, seed=3, std=0.03)
    merged = work / "gemma-merged"
    merge("default", adapter, merged)
    merged_gguf = work / "gemma-merged-f32.gguf"
    convert(merged, merged_gguf, "f32", progress=False)
    base_gguf = converted(name, paths["hf"], work, "f32")
    lora = work / "gemma-lora.gguf"
    summary = export_adapter(adapter, str(base_gguf), lora, "f32")
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(paths["hf"])(PROMPT)["input_ids"]
    merged_ids, merged_logits = llama_cpp_greedy(merged_gguf, tokens, steps=24)
    adapted_ids, adapted_logits = llama_cpp_greedy(base_gguf, tokens, steps=24, lora_path=lora)
    _, base_logits = llama_cpp_greedy(base_gguf, tokens, steps=24)
    report(
        check="adapter_vs_merged",
        model=name,
        adapter_mb=round(lora.stat().st_size / 2**20, 2),
        pairs=summary["pairs"],
        same_greedy_text=adapted_ids == merged_ids,
        max_abs_dlogit=float(np.abs(adapted_logits - merged_logits).max()),
        adapter_effect_max_abs=float(np.abs(base_logits - merged_logits).max()),
    )
    # the embedded (Q4_K_M) base takes the same adapter: teacher-forced on the merged model's continuation,
    # its top-1 choices should follow the merged model far more often than the bare base's do
    lora_q = export_adapter(adapter, "default", work / "gemma-lora-for-q4_k_m.gguf")["out"]
    sequence = list(tokens) + merged_ids
    generated = slice(len(tokens) - 1, len(sequence) - 1)
    reference = llama_cpp_logits(merged_gguf, sequence)[generated].argmax(-1)
    with_adapter = llama_cpp_logits(paths["gguf"], sequence, lora_path=lora_q)[generated].argmax(-1)
    without = llama_cpp_logits(paths["gguf"], sequence)[generated].argmax(-1)
    report(
        check="adapter_on_embedded_q4_k_m",
        model=name,
        positions=len(merged_ids),
        top1_agreement_with_merged_f32=float((with_adapter == reference).mean()),
        top1_agreement_without_adapter=float((without == reference).mean()),
    )


CHECKS = {"tokenizer": check_tokenizer, "logits": check_logits, "roundtrip": check_roundtrip, "adapter": check_adapter}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/ijt-check-parity", help="Folder for the converted files.")
    parser.add_argument("--only", default=",".join(CHECKS))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    models = real_models()
    started = time.perf_counter()
    for check in args.only.split(","):
        CHECKS[check.strip()](models, work)
    report(check="summary", seconds=round(time.perf_counter() - started, 1), results=len(RESULTS))


if __name__ == "__main__":
    main()
