"""Subcommands of this package, gathered by ijt_local.cli."""

from __future__ import annotations

import click

from .builders import BUILDERS
from .prepare import VARIANTS, prepare


@click.group("data")
def data():
    """Build training sets in the paper's formats."""


@data.command("prepare")
@click.argument("name", type=click.Choice(list(BUILDERS)))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output JSONL file.")
@click.option(
    "--from",
    "from_path",
    type=click.Path(),
    default=None,
    help="Local file or folder (e.g. ../shared/data); without it, the paper's HF dataset (online).",
)
@click.option("--limit", type=int, default=1000, show_default=True, help="Keep the first N examples.")
@click.option(
    "--variant",
    type=click.Choice(VARIANTS),
    default="instruction",
    show_default=True,
    help="`response` drops the user turn (response tuning).",
)
def prepare_command(name, out, from_path, limit, variant):
    """Write dataset NAME as {"dataset","id","messages"} JSONL rows."""
    count = prepare(name, out, from_path=from_path, limit=limit, variant=variant)
    click.echo(f"wrote {count} {variant} rows of {name} to {out}")


commands: list = [data]
