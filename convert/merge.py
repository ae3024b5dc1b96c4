"""`ijt-local merge --base B --adapter DIR --out HF_DIR`: fold a PEFT LoRA into its base model's weights.

The result is a plain Hugging Face folder (safetensors, config, tokenizer) that `convert` turns into GGUF.
A base that transformers dequantized from a GGUF is marked quantized and refuses save_pretrained; its
weights are ordinary float tensors by then, so the folder is written here directly instead.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ijt_local.errors import UserError

from .gguf_output import tulu_chat_template_jinja

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def read_adapter_config(adapter: Path) -> dict:
    if not adapter.is_dir():
        raise UserError(f"{adapter}: no such adapter folder")
    for name in ADAPTER_FILES:
        if not (adapter / name).exists():
            raise UserError(f"{adapter}: not a PEFT LoRA adapter folder (no {name})")
    try:
        config = json.loads((adapter / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{adapter / 'adapter_config.json'}: unreadable ({exc})") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise UserError(f"{adapter}: a {config.get('peft_type')} adapter; only LoRA adapters can be merged")
    return config


def check_trained_on(adapter: Path, base_info: dict) -> None:
    """Refuse an adapter whose run.json names a different base than the one given (same kind of spec)."""
    run = adapter / "run.json"
    if not run.exists():
        return
    try:
        trained = json.loads(run.read_text()).get("base") or {}
    except (OSError, ValueError):
        return
    if (
        trained.get("sha256")
        and base_info.get("sha256")
        and trained.get("kind") == base_info.get("kind")
        and trained["sha256"] != base_info["sha256"]
    ):
        raise UserError(
            f"{adapter}: trained on base {trained.get('spec')} (sha256 {trained['sha256'][:12]}…), "
            f"not on {base_info.get('spec')} (sha256 {base_info['sha256'][:12]}…)"
        )


def attach_adapter(model, adapter: Path):
    """PeftModel over `model`; shape mismatches (an adapter for another base) become one clear line."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), first[0] if first else "")
        raise UserError(f"{adapter}: does not fit this base model ({detail[:200]})") from None


def save_hf_folder(model, tokenizer, out: Path, extra_config: dict | None = None) -> None:
    """Write model + tokenizer as safetensors/config/tokenizer files, through a temporary folder."""
    from safetensors.torch import save_file

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        state = model.state_dict()
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)  # tied: the embedding is the head
        save_file(
            {k: v.detach().contiguous() for k, v in state.items()}, tmp / "model.safetensors", metadata={"format": "pt"}
        )
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        if not config.get("architectures"):
            config["architectures"] = [type(model).__name__]
        config.update(extra_config or {})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = tulu_chat_template_jinja()
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"{out}: write failed ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_output_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not (out / "config.json").exists():
        raise UserError(f"{out}: exists and is not a model folder; refusing to replace it")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise UserError(f"{out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{out}: cannot write to {parent} (permission denied)")


def merge(base: str, adapter, out) -> dict:
    """Load `base` (spec as in `ijt-local train --base`), apply the LoRA in `adapter`, merge, save."""
    import torch

    from ijt_local.train.base import load_base_model

    adapter, out = Path(adapter), Path(out)
    adapter_config = read_adapter_config(adapter)
    check_output_folder(out)
    model, tokenizer, base_info = load_base_model(base, device="cpu", dtype=torch.float32)
    check_trained_on(adapter, base_info)
    peft_model = attach_adapter(model, adapter)
    merged = peft_model.merge_and_unload()
    source = {
        "base": base_info.get("spec", base),
        "base_sha256": base_info.get("sha256"),
        "adapter": str(adapter.resolve()),
    }
    save_hf_folder(merged, tokenizer, out, {"ijt_local_merged": source})
    return {
        "out": str(out),
        "architecture": base_info.get("architecture"),
        "rank": adapter_config.get("r"),
        "alpha": adapter_config.get("lora_alpha"),
        "target_modules": adapter_config.get("target_modules"),
    }
