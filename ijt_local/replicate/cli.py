"""`ijt-local replicate`, gathered by ijt_local.cli (scripts/replicate.py runs the same command)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import cli_options as options
from ..data.home import shared_data_path
from ..errors import UserError
from ..eval.judge_prompts import DEFAULT_FORM
from .budgets import BUDGETS

EXAMPLES = """
\b
  ijt-local replicate --budget smoke --out runs/smoke
  ijt-local replicate --budget laptop --out runs/laptop --seeds 3 --judge judge
  ijt-local replicate --budget laptop --out runs/laptop --dry-run
"""


@click.command("replicate", epilog=EXAMPLES)
@options.base(
    "The base model: `default`, a GGUF file, a Hugging Face folder or repo id.", default="default", show_default=True
)
@click.option(
    "--budget",
    type=click.Choice(sorted(BUDGETS)),
    default="smoke",
    show_default=True,
    help="smoke: minutes, proves the chain; laptop: hours on 2 cores; paper: the paper's settings (GPU).",
)
@options.out("The run folder; a rerun resumes it and redoes no finished work.", file=False, required=True)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Adapters trained per training set."
)
@options.data_root(
    "The folder of the paper's data sets (fill the data home with: ijt-local data fetch all).",
    default=lambda: str(shared_data_path()),
    show_default="the data home: $IJT_LOCAL_DATA, else $IJT_LOCAL_HOME/data",
)
@options.judge('In-process judge for win rates, e.g. judge (pip install -e ".[judge]").', dest="judge")
@options.judge_prompt_form(DEFAULT_FORM)
@options.judge_url
@options.judge_model
@click.option(
    "--train-processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Train each adapter in N data-parallel processes (torchrun; one per GPU).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (rows, steps, tokens, estimated hours from short runs here); OUT is not touched.",
)
@click.option(
    "--archive",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE.tar.xz",
    help="Instead of running, pack OUT without adapter weights, GGUFs or training sets: the replies, "
    "judgements, scores and stage records the report is built from.",
)
def replicate_command(dry_run, archive, **options):
    """Replicate the paper's three findings at laptop scale: data, train, convert, evaluate, win rates,
    report (OUT/results.md and OUT/results.json, the paper's numbers beside)."""
    from .stages import Options, Replication

    options = Options(**{**options, "out": Path(options["out"]), "data_root": Path(options["data_root"])})
    options.check()
    if dry_run:
        import tempfile

        from .plan import plan, render_plan

        with tempfile.TemporaryDirectory(prefix="ijt-plan-") as scratch:
            planned = plan(Replication(options, out=Path(scratch)))
        click.echo(render_plan(planned))
        click.echo(json.dumps(planned))
    elif archive:
        if not (options.out / "replication.json").is_file():
            raise UserError(f"{options.out}: no replication run to archive (no replication.json)")
        members = Replication(options).archive(Path(archive))
        click.echo(f"replicate: {archive}: {members} files, {Path(archive).stat().st_size:,} bytes")
    else:
        Replication(options).run()


commands: list = [replicate_command]
