"""`ijt-local export-adapter ADAPTER_DIR --base B --out A.gguf`: a PEFT LoRA as a GGUF LoRA adapter that
llama.cpp applies at run time (`ijt-local chat --adapter A.gguf`): one base GGUF, many small adapters.

Each LoRA pair is written as `<base tensor>.lora_a` (A, rank x in) and `.lora_b` (B, out x rank), checked
against the base GGUF's tensor shapes; llama.cpp scales B·A by scale · alpha / rank. f16 is the default:
on a 2-core CPU an f32 adapter doubles gemma-3-270m's time per token, an f16 one adds about 15 %. For the llama
architecture the base's q/k rows were permuted at conversion, so B's rows are permuted the same way.
"""

from __future__ import annotations

import math
from pathlib import Path

from ijt_local.errors import UserError

from .architectures import ARCHITECTURES, permute_rotary
from .gguf_output import atomic_output, check_writable
from .merge import read_adapter_config
from .safetensors_index import index_tensors

PEFT_PREFIX = "base_model.model."


def _base_gguf(base: str) -> Path:
    from ijt_local.models import resolve_model

    return resolve_model(base).path


def _read_base(path: Path) -> tuple[str, dict, dict[str, tuple[int, ...]]]:
    """(architecture, the numeric metadata, tensor name -> GGUF shape [ne0, ne1, ...])."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable GGUF ({exc})") from None
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            continue
        try:
            meta[key] = field.contents()
        except (ValueError, TypeError, IndexError):
            continue
    if meta.get("general.type") == "adapter":
        raise UserError(f"{path}: is itself an adapter; --base must be the model GGUF")
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in reader.tensors}
    return str(meta.get("general.architecture")), meta, shapes


def _alpha(config: dict, rank: int, where: Path) -> float:
    if config.get("use_dora"):
        raise UserError(f"{where}: DoRA adapters have no llama.cpp LoRA equivalent; merge it instead")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise UserError(f"{where}: per-layer rank/alpha patterns cannot be expressed in one GGUF adapter alpha")
    if config.get("fan_in_fan_out"):
        raise UserError(f"{where}: fan_in_fan_out adapters (GPT-2 Conv1D) are not supported")
    if config.get("bias", "none") != "none":
        raise UserError(f"{where}: adapters that train biases (bias={config['bias']}) are not supported")
    alpha = float(config.get("lora_alpha", rank))
    # rsLoRA scales by alpha/sqrt(r); llama.cpp always divides by r, so fold the difference into alpha
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def export_adapter(adapter, base: str, out, outtype: str = "f16") -> dict:
    import gguf
    import numpy as np

    adapter, out = Path(adapter), Path(out)
    config = read_adapter_config(adapter)
    if outtype not in ("f32", "f16"):
        raise UserError(f"--outtype {outtype}: adapters are written as f32 or f16")
    check_writable(out)
    base_path = _base_gguf(base)
    arch_name, meta, base_shapes = _read_base(base_path)
    arch = next((a for a in ARCHITECTURES.values() if a.name == arch_name), None)
    if arch is None:
        raise UserError(f"{base_path}: architecture {arch_name!r} is not supported (llama, qwen2, gemma3)")
    layers = int(meta[f"{arch_name}.block_count"])
    heads = int(meta[f"{arch_name}.attention.head_count"])
    kv_heads = int(meta.get(f"{arch_name}.attention.head_count_kv", heads))
    names = gguf.get_tensor_name_map(arch.gguf_arch(), layers)

    entries = index_tensors(adapter)
    pairs: dict[str, dict[str, object]] = {}
    for name, entry in entries.items():
        stem = name[len(PEFT_PREFIX) :] if name.startswith(PEFT_PREFIX) else name
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in stem:
                module = stem.split(marker)[0]
                pairs.setdefault(module, {})[part] = entry
                break
        else:
            raise UserError(f"{adapter}: tensor {name} is not a LoRA A/B matrix (modules_to_save is not supported)")
    if not pairs:
        raise UserError(f"{adapter}: no LoRA tensors in adapter_model.safetensors")

    rank = None
    planned = []
    for module, pair in sorted(pairs.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise UserError(f"{adapter}: {module} lacks its {'lora_B' if 'lora_A' in pair else 'lora_A'} matrix")
        a, b = pair["lora_A"], pair["lora_B"]
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None or target not in base_shapes:
            raise UserError(f"{adapter}: adapts {module}, which the {arch_name} base {base_path.name} does not have")
        fan_in, fan_out = base_shapes[target][0], base_shapes[target][1]
        if a.shape[1] != fan_in or b.shape[0] != fan_out or a.shape[0] != b.shape[1]:
            raise UserError(
                f"{adapter}: {module} is {b.shape[0]}x{a.shape[1]} (rank {a.shape[0]}) but {target} in "
                f"{base_path.name} is {fan_out}x{fan_in}: the adapter was trained for a different base"
            )
        rank = rank or a.shape[0]
        permute_heads = None
        if arch.rope_permuted and target.endswith("attn_q.weight"):
            permute_heads = heads
        elif arch.rope_permuted and target.endswith("attn_k.weight"):
            permute_heads = kv_heads
        planned.append((target, a, b, permute_heads))
    alpha = _alpha(config, rank, adapter)

    dtype = np.float32 if outtype == "f32" else np.float16
    with atomic_output(out) as tmp:
        writer = gguf.GGUFWriter(tmp, arch_name)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(f"LoRA {adapter.resolve().name}")
        for target, a, b, permute_heads in planned:
            lora_b = b.read()
            if permute_heads:
                lora_b = permute_rotary(lora_b, permute_heads)
            writer.add_tensor(target + ".lora_a", a.read().astype(dtype))
            writer.add_tensor(target + ".lora_b", np.ascontiguousarray(lora_b).astype(dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return {
        "out": str(out),
        "base": str(base_path),
        "architecture": arch_name,
        "pairs": len(planned),
        "rank": rank,
        "alpha": alpha,
        "bytes": out.stat().st_size,
    }
