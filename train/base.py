"""Load the base model for training or merging from a `--base` spec.

    default              the embedded gemma-3-270m GGUF (ijt_local.models.embedded_gemma_path)
    path/to/model.gguf   any GGUF transformers can dequantize
    path/to/hf_dir       a Hugging Face model folder (config.json + safetensors)
    owner/name           a Hugging Face repo id (downloaded when online)

A GGUF is dequantized by transformers once (~70 s for gemma-3-270m on 2 cores) and cached as a plain HF
folder (safetensors, config, tokenizer) under the ijt-local cache, keyed by the GGUF's sha256; later runs
load that folder in a couple of seconds. The cached folder is what `convert` merges into.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ijt_local.errors import UserError
from ijt_local.models import GEMMA_SHA256, cache_dir, check_gguf, embedded_gemma_path
from ijt_local.models import file_sha256 as hash_file


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered in the cache (keyed by path, size and mtime)."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    memo = cache_dir() / "sha256" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".txt")
    if memo.exists():
        return memo.read_text().strip()
    digest = hash_file(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(digest)
    return digest


def folder_sha256(folder: Path) -> str:
    """One hash over a model folder's config and weight files (names and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.suffix in {".json", ".safetensors"} and p.is_file())
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def dequantized_gguf_dir(gguf: Path, sha256: str | None = None) -> Path:
    """The cached HF folder for a GGUF, built on first use (through a temporary folder and a rename)."""
    check_gguf(gguf)
    sha256 = sha256 or file_sha256(gguf)
    target = cache_dir() / "hf-from-gguf" / f"{gguf.stem}-{sha256[:16]}"
    if (target / "model.safetensors").exists():
        return target
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise UserError(f"{gguf}: transformers cannot load this GGUF ({exc})") from None
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # A GGUF-loaded model is marked quantized and refuses save_pretrained; its tensors are plain float32
    # by now, so write them ourselves and drop the marker from the config.
    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp / "model.safetensors", metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["ijt_local_source"] = {"gguf": str(gguf), "sha256": sha256}
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # an older partial copy
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def is_gguf_base(spec: str) -> bool:
    """Whether `--base` names a GGUF (the embedded default or a file), told without reading or hashing it."""
    return spec == "default" or spec.endswith(".gguf") or Path(spec).expanduser().is_file()


def resolve_base(spec: str) -> dict:
    """`--base` -> {"spec", "kind", "hf_dir" or "repo_id", "sha256", ...} without loading any weights."""
    if spec == "default":
        gguf = embedded_gemma_path()
        return {
            "spec": spec,
            "kind": "gguf",
            "gguf": str(gguf),
            "sha256": GEMMA_SHA256,
            "name": "google/gemma-3-270m (embedded Q4_K_M GGUF)",
        }
    path = Path(spec).expanduser()
    if is_gguf_base(spec):
        check_gguf(path)
        return {"spec": spec, "kind": "gguf", "gguf": str(path.resolve()), "sha256": file_sha256(path)}
    if path.is_dir():
        if not (path / "config.json").exists():
            raise UserError(f"{path}: not a Hugging Face model folder (no config.json)")
        return {"spec": spec, "kind": "hf_dir", "hf_dir": str(path.resolve()), "sha256": folder_sha256(path)}
    parts = spec.split("/")
    if len(parts) == 2 and all(parts) and not spec.startswith((".", "~")):
        return {"spec": spec, "kind": "hub", "repo_id": spec}
    raise UserError(f"--base {spec}: not `default`, a GGUF file, a Hugging Face model folder, or an owner/name repo id")


def _hub_dir(repo_id: str) -> Path:
    from huggingface_hub import constants, snapshot_download

    from ijt_local.data.prepare import hub_reachable

    if not hub_reachable():  # answer from the local HF cache at once instead of retrying the network
        constants.HF_HUB_OFFLINE = True
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--base {repo_id}: cannot download from the Hugging Face hub ({reason})") from None


def base_folder(spec: str) -> tuple[Path, dict]:
    """The local HF folder a base spec loads from (dequantizing/downloading it if needed), and its info."""
    info = resolve_base(spec)
    if info["kind"] == "gguf":
        folder = dequantized_gguf_dir(Path(info["gguf"]), info["sha256"])
    elif info["kind"] == "hub":
        folder = _hub_dir(info["repo_id"])
        info["sha256"] = folder_sha256(folder)
    else:
        folder = Path(info["hf_dir"])
    info["hf_dir"] = str(folder)
    return folder, info


def load_tokenizer(folder: Path, spec: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (ValueError, KeyError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--base {spec}: cannot load a tokenizer from {folder} ({reason})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(folder: Path, spec: str, info: dict, device: str = "cpu", dtype=None):
    """The causal LM in `folder`, in eval mode on `device`; adds its architecture and size to `info`."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    except (ValueError, KeyError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--base {spec}: cannot load model from {folder} ({reason})") from None
    model.to(device)
    model.eval()
    config = model.config
    info.update(
        architecture=config.model_type,
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        dtype=str(dtype).replace("torch.", ""),
    )
    return model


def load_base_model(spec: str, device: str = "cpu", dtype=None):
    """`--base` spec -> (model, tokenizer, base_info). The model is in eval mode on `device`, in `dtype`
    (float32 when None); `base_info` names the source, its sha256 and the HF folder (`hf_dir`) the weights
    came from (for a GGUF: the cached dequantized copy)."""
    folder, info = base_folder(spec)
    tokenizer = load_tokenizer(folder, spec)
    return load_model(folder, spec, info, device, dtype), tokenizer, info
