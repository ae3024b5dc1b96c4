"""A random LoRA adapter GGUF for the embedded gemma-3-270m, written the way export-adapter writes them."""

from __future__ import annotations

import gguf
import numpy as np


def make_gemma_lora(path, seed: int, rank: int = 4) -> None:
    """A random LoRA adapter GGUF for gemma-3-270m (every block's ffn_down), as export-adapter writes them."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    for block in range(18):
        writer.add_tensor(
            f"blk.{block}.ffn_down.weight.lora_a", (rng.standard_normal((rank, 2048)) * 0.05).astype(np.float32)
        )
        writer.add_tensor(
            f"blk.{block}.ffn_down.weight.lora_b", (rng.standard_normal((640, rank)) * 0.05).astype(np.float32)
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
