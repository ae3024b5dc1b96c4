"""Read a Hugging Face folder's safetensors files tensor by tensor (or row block by row block) into float32
numpy arrays, without torch and without mapping whole files: a converter's memory stays near one block."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

from ijt_local.errors import UserError

DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2)}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    file: Path
    dtype: str  # safetensors dtype: F32, F16, BF16
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the data in `file`

    @property
    def row_bytes(self) -> int:
        return prod(self.shape[1:]) * DTYPES[self.dtype][1]

    def read_rows(self, start: int = 0, stop: int | None = None):
        """Rows start..stop (all of a 1-D tensor) as float32."""
        import numpy as np

        stop = self.shape[0] if stop is None else stop
        numpy_dtype, size = DTYPES[self.dtype]
        per_row = prod(self.shape[1:])
        with self.file.open("rb") as handle:
            handle.seek(self.offset + start * per_row * size)
            raw = np.fromfile(handle, dtype=numpy_dtype, count=(stop - start) * per_row)
        if raw.size != (stop - start) * per_row:
            raise UserError(f"{self.file}: truncated data for tensor {self.name}")
        if self.dtype == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32, copy=False).reshape((stop - start, *self.shape[1:]))

    def read(self):
        return self.read_rows()


def _read_header(file: Path) -> dict:
    try:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 2**20:
                raise ValueError("header too large")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise UserError(f"{file}: not a readable safetensors file ({exc})") from None
    header.pop("__metadata__", None)
    base = 8 + length
    return {name: (info, base) for name, info in header.items()}


def weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{index}: unreadable ({exc})") from None
        return [folder / name for name in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
            raise UserError(f"{folder}: only pickle weights (*.bin); save the model as safetensors first")
        raise UserError(f"{folder}: no *.safetensors weights")
    return files


def index_tensors(folder: Path) -> dict[str, TensorEntry]:
    """Every tensor of the folder's safetensors files, by name, from the headers alone."""
    entries: dict[str, TensorEntry] = {}
    for file in weight_files(folder):
        if not file.exists():
            raise UserError(f"{file}: listed in the index but missing")
        for name, (info, base) in _read_header(file).items():
            dtype = info.get("dtype")
            if dtype not in DTYPES:
                raise UserError(f"{file}: tensor {name} has dtype {dtype}; expected F32, F16 or BF16")
            start, end = info["data_offsets"]
            shape = tuple(int(x) for x in info["shape"])
            if end - start != prod(shape) * DTYPES[dtype][1]:
                raise UserError(f"{file}: tensor {name} has {end - start} bytes for shape {list(shape)} {dtype}")
            entries[name] = TensorEntry(name, file, dtype, shape, base + start)
    return entries
