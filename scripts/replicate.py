"""Laptop-scale replication of the paper's three findings, in one command: `ijt-local replicate`
(ijt_local/replicate/). This entry point keeps earlier command lines working:

    python scripts/replicate.py --base default --budget smoke --out runs/smoke
    python scripts/replicate.py --base default --budget laptop --out runs/laptop --seeds 2 \\
        [--judge judge | --judge-url http://127.0.0.1:8000/v1 --judge-model NAME]
"""

import sys

from ijt_local.cli import cli

if __name__ == "__main__":
    cli(["replicate", *sys.argv[1:]], prog_name="ijt-local")
