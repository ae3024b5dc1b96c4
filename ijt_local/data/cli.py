"""Subcommands of this package, gathered by ijt_local.cli."""

from __future__ import annotations

from pathlib import Path

import click

from .. import cli_options as options
from ..errors import UserError
from .builders import BUILDERS
from .prepare import VARIANTS, prepare, source_of


@click.group("data")
def data():
    """The paper's data sets: fetch them into the data home, list them, build training sets."""


def _home(data_root: str | None) -> Path:
    from .home import data_home

    return Path(data_root).expanduser().absolute() if data_root else data_home()


def _human_size(size: int) -> str:
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


@data.command("fetch")
@click.argument("names", nargs=-1, required=True, metavar="NAME...|all")
@options.data_root()
def fetch_command(names, data_root):
    """Download sets (lima, val, alpaca_eval, ifeval, gsm8k, mbpp, poetry, recipes, chess, or all) into the data
    home, checked by sha256; files already there are kept, an interrupted download resumes.

    With IJT_LOCAL_DATA_MIRROR=URL set, each https://HOST/PATH is read from URL/HOST/PATH instead (the layout
    `wget --force-directories` makes)."""
    from .fetch import fetch_set
    from .sets import SETS

    wanted = list(SETS) if "all" in names else list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in SETS]
    if unknown:
        raise UserError(f"{unknown[0]}: no such data set (known: {', '.join(SETS)}, or all)")
    home = _home(data_root)
    failed = []
    for name in wanted:
        try:
            done = fetch_set(home, SETS[name])
        except UserError as exc:
            if len(wanted) == 1:
                raise
            click.echo(f"Error: {exc}", err=True)
            failed.append(name)
            continue
        fetched = sum(outcome == "fetched" for outcome in done.outcomes.values())
        what = f"fetched {fetched} of {len(done.outcomes)} files" if fetched else "already present"
        click.echo(f"{name}: {what} in {home / name} (licence: {SETS[name].licence})")
    if failed:
        raise UserError(f"not fetched: {', '.join(failed)} (see above)")


@data.command("list")
@options.data_root()
def list_command(data_root):
    """One line per set: present, missing or damaged (sha256 checked), its folder, size and licence."""
    from .fetch import set_state
    from .home import describe_home
    from .sets import SETS

    home = _home(data_root)
    click.echo(f"data home: {home}" if data_root else f"data home: {describe_home(home)}")
    for data_set in SETS.values():
        state = set_state(home, data_set)
        size = _human_size(state.size) if state.size else "-"
        click.echo(f"{data_set.name:<12} {state.summary:<24} {size:>9}  {home / data_set.name}  {data_set.licence}")


@data.command("prepare")
@click.argument("name", type=click.Choice(list(BUILDERS)))
@options.out("Output JSONL file.", required=True)
@click.option(
    "--from",
    "from_path",
    type=click.Path(),
    default=None,
    help="Local file or folder; without it, the set's folder in the data home (ijt-local data fetch NAME), "
    "else the paper's HF dataset (online).",
)
@options.limit("Keep the first N examples.", default=1000, show_default=True)
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
    click.echo(f"wrote {count} {variant} rows of {name} to {out} (from {source_of(name, from_path)})")


commands: list = [data]
