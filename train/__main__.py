"""`python -m ijt_local.train [the options of ijt-local train]`, the entry a multi-process launcher runs:

    torchrun --nproc_per_node 4 -m ijt_local.train --base ... --data ... --out ... --device cuda
    accelerate launch --num_processes 4 -m ijt_local.train --base ... --data ... --out ...

The transformers Trainer does the data parallelism (DistributedDataParallel, started from the launcher's
environment); only rank 0 writes the adapter, run.json and the loss curve, and only rank 0 reports bad input.
"""

import sys

from ijt_local.errors import UserError

from .cli import train_command
from .distributed import is_main_process


def main() -> None:
    try:
        train_command.main(prog_name="python -m ijt_local.train")
    except UserError as exc:
        if is_main_process():
            print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
