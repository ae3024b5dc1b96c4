"""Training under a multi-process launcher (torchrun, accelerate launch): what this process is, and checks
made before torch.distributed starts.

The launcher sets WORLD_SIZE, RANK and LOCAL_RANK; the transformers Trainer (through accelerate) reads the
same variables, starts the process group and wraps the model in DistributedDataParallel. Nothing here
talks to other processes: every check below gives the same answer on every rank, so all ranks stop
together and the launcher never waits on a rank that quit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ijt_local.errors import UserError


@dataclass(frozen=True)
class Processes:
    world_size: int
    rank: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_processes() -> Processes:
    """This process's place among the launcher's processes (1 process, rank 0 without a launcher)."""

    def number(name: str, default: int) -> int:
        text = os.environ.get(name, "")
        return int(text) if text.strip().isdigit() else default

    return Processes(number("WORLD_SIZE", 1), number("RANK", 0), number("LOCAL_RANK", 0))


def is_main_process() -> bool:
    return launched_processes().is_main


def per_process_batch(batch_size: int, processes: Processes) -> int:
    """--batch-size is the rows of one step over all processes, so a run's training does not depend on
    how many processes share it; each process takes an equal part."""
    if batch_size % processes.world_size:
        raise UserError(
            f"--batch-size {batch_size} does not split evenly over {processes.world_size} processes: "
            f"pass a multiple of {processes.world_size} (each process takes batch-size / processes rows)"
        )
    return batch_size // processes.world_size


def ddp_backend(device: str, processes: Processes) -> str | None:
    """The torch.distributed backend for `device`, after checking this torch build and machine have it."""
    if processes.world_size == 1:
        return None
    import torch

    if not torch.distributed.is_available():
        raise UserError(
            f"launched as {processes.world_size} processes, but this torch build has no "
            "torch.distributed; run a single process or install a torch with distributed support"
        )
    if device == "mps":
        raise UserError(
            "--device mps trains in one process (Apple Metal has no multi-process backend); "
            "run without torchrun / accelerate launch"
        )
    if device == "cuda":
        visible = torch.cuda.device_count()
        if processes.local_rank >= visible:
            raise UserError(
                f"LOCAL_RANK {processes.local_rank} but only {visible} CUDA device(s) are visible: "
                f"start at most {visible} processes per machine"
            )
        if not torch.distributed.is_nccl_available():
            raise UserError("--device cuda under a launcher needs the NCCL backend, which this torch build lacks")
        return "nccl"
    if not torch.distributed.is_gloo_available():
        raise UserError("--device cpu under a launcher needs the gloo backend, which this torch build lacks")
    return "gloo"
