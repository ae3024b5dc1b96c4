"""`ijt-local convert HF_DIR --out F.gguf`: a Hugging Face llama / qwen2 / gemma3 / olmo / olmo2 folder -> GGUF.

Everything is checked before the output is opened (architecture, tensor names, shapes, dtypes, tokenizer);
tensors are then streamed one at a time, the large ones in row blocks, into a temporary file that is
renamed at the end. `--quantize TYPE` writes f16 first and hands it to llama.cpp's quantizer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ijt_local.errors import UserError

from .architectures import Architecture, HParams, architecture_of
from .gguf_output import FILE_TYPES, OUTTYPES, atomic_output, check_writable, encode_tensor, encoded_nbytes
from .safetensors_index import TensorEntry, index_tensors
from .vocab import add_vocab

ROW_BLOCK_BYTES = 64 * 2**20  # source bytes read at once for tensors streamed in row blocks
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass(frozen=True)
class PlannedTensor:
    source: TensorEntry
    gguf_name: str
    nbytes: int
    ggml_type: object


class _StreamedTensor:
    """Quacks like the numpy array GGUFWriter.write_tensor_data expects (nbytes, tofile) but converts
    the source block by block, so the largest tensor (the embedding) is never whole in memory."""

    def __init__(self, item: PlannedTensor, outtype: str, arch: Architecture, hp: HParams, progress):
        self.item, self.outtype, self.arch, self.hp, self.progress = item, outtype, arch, hp, progress
        self.nbytes = item.nbytes

    def tofile(self, handle) -> None:
        source = self.item.source
        rows = source.shape[0]
        # row-wise changes (norm +1, nothing) can go in blocks; the q/k permutation needs whole tensors
        permuted = self.arch.rope_permuted and source.name.endswith(
            ("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")
        )
        whole = permuted or len(source.shape) == 1 or source.row_bytes * rows <= ROW_BLOCK_BYTES
        step = rows if whole else max(1, ROW_BLOCK_BYTES // source.row_bytes)
        written = 0
        for start in range(0, rows, step):
            block = source.read_rows(start, min(rows, start + step))
            block = self.arch.transform(source.name, block, self.hp)
            data, _ = encode_tensor(block, self.outtype)
            data.tofile(handle)
            written += data.nbytes
            self.progress.update(data.nbytes)
        if written != self.nbytes:
            raise RuntimeError(f"{source.name}: wrote {written} bytes, planned {self.nbytes}")


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (convert takes a Hugging Face model folder)")
    if not path.exists():
        raise UserError(f"{folder}: not a Hugging Face model folder (no config.json)")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    if "text_config" in config and "hidden_size" not in config:
        raise UserError(f"{path}: a multimodal model ({config.get('model_type')}); save its text model first")
    return config


def plan_tensors(folder: Path, arch: Architecture, hp: HParams, outtype: str) -> list[PlannedTensor]:
    """Map, check and size every tensor; refuse missing, unexpected or misshapen ones by name."""
    import gguf

    entries = index_tensors(folder)
    names = gguf.get_tensor_name_map(arch.gguf_arch(), hp.layers)
    block_shapes = hp.expected_shapes() | arch.block_shapes(hp)
    optional = {"lm_head.weight"} if hp.tied else set()
    if arch.name == "llama" and hp.config.get("attention_bias"):
        optional |= {f"model.layers.{i}.self_attn.{p}_proj.bias" for i in range(hp.layers) for p in "qkvo"}
        block_shapes["self_attn.o_proj.bias"] = (hp.hidden,)
    required = {"model.embed_tokens.weight": (hp.vocab, hp.hidden)}
    if arch.final_norm:
        required["model.norm.weight"] = (hp.hidden,)
    if not hp.tied:
        required["lm_head.weight"] = (hp.vocab, hp.hidden)
    for layer in range(hp.layers):
        for suffix in arch.block_tensors:
            required[f"model.layers.{layer}.{suffix}"] = block_shapes[suffix]
    missing = [name for name in required if name not in entries]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"{folder}: missing tensor {missing[0]}{more} for a {hp.layers}-layer {arch.name} model")

    plan = []
    for name, entry in entries.items():
        if name.endswith(SKIPPED_SUFFIXES) or (name == "lm_head.weight" and hp.tied):
            continue
        if name not in required and name not in optional:
            raise UserError(f"{folder}: unexpected tensor {name} for a {hp.layers}-layer {arch.name} model")
        expected = required.get(name) or block_shapes.get(name.split(".", 3)[-1])
        if expected is not None and entry.shape != tuple(expected):
            raise UserError(
                f"{entry.file}: tensor {name} has shape {list(entry.shape)}, config.json implies {list(expected)}"
            )
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"{folder}: no GGUF name for tensor {name} in {arch.name}")
        nbytes, ggml_type = encoded_nbytes(entry.shape, outtype)
        plan.append(PlannedTensor(entry, gguf_name, nbytes, ggml_type))
    return plan


def _model_name(folder: Path, config: dict) -> str:
    source = config.get("ijt_local_source") or {}
    return config.get("_model_name_or_path") or source.get("name") or folder.resolve().name


def write_gguf(folder: Path, out: Path, outtype: str = "f16", progress: bool = True) -> dict:
    """Write `folder` as one GGUF file at `out` (atomically). Returns a summary."""
    import gguf
    import numpy as np
    from tqdm import tqdm

    folder, out = Path(folder), Path(out)
    if outtype not in OUTTYPES:
        raise UserError(f"--outtype {outtype}: choose one of {', '.join(OUTTYPES)}")
    config = read_config(folder)
    arch = architecture_of(config, str(folder / "config.json"))
    hp = HParams(config, str(folder / "config.json"))
    check_writable(out)
    plan = plan_tensors(folder, arch, hp, outtype)
    started = time.perf_counter()
    with atomic_output(out) as tmp:
        writer = gguf.GGUFWriter(tmp, arch.name)
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(_model_name(folder, config))
        writer.add_file_type(FILE_TYPES[outtype])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        arch.write_hparams(writer, hp)
        vocab = add_vocab(writer, folder, hp.vocab)
        n_tokens, tokenizer_model = len(vocab.tokens), vocab.model
        del vocab
        for item in plan:
            writer.add_tensor_info(
                item.gguf_name, item.source.shape, np.dtype(np.float32), item.nbytes, raw_dtype=item.ggml_type
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.kv_data = [{}]  # the vocabulary is on disk; free it before the weights stream through
        writer.write_ti_data_to_file()
        total = sum(item.nbytes for item in plan)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"convert {out.name}", disable=not progress) as bar:
            for item in plan:
                writer.write_tensor_data(_StreamedTensor(item, outtype, arch, hp, bar))
        writer.close()
    return {
        "out": str(out),
        "architecture": arch.name,
        "outtype": outtype,
        "tensors": len(plan),
        "vocab": n_tokens,
        "tokenizer": tokenizer_model,
        "bytes": out.stat().st_size,
        "seconds": round(time.perf_counter() - started, 2),
    }


def convert(folder, out, outtype: str = "f16", quantize: str | None = None, progress: bool = True) -> dict:
    """`ijt-local convert`: write GGUF, then (with `quantize`) quantize it through llama.cpp."""
    out = Path(out)
    if quantize is None:
        return write_gguf(Path(folder), out, outtype, progress)
    from .quantize import check_type, quantize_gguf

    check_type(quantize)
    check_writable(out)
    intermediate = out.with_name(f".{out.stem}.{outtype}.tmp-{os.getpid()}.gguf")
    try:
        summary = write_gguf(Path(folder), intermediate, outtype, progress)
        summary.update(quantize_gguf(intermediate, out, quantize))
    finally:
        intermediate.unlink(missing_ok=True)
    summary["out"] = str(out)
    return summary
