"""`ijt-local rules fit`: fit the rule expert's numbers to a base model (ijt_local/rules_fit/search.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import cli_options as options
from ..data.home import PROMPT_NAMES, data_file
from ..errors import UserError


@click.group()
def rules():
    """The rule expert: fit its numbers to a model."""


@rules.command("fit")
@options.model(
    "Model SPEC (name, GGUF, +adapter.gguf[@scale]); the rules under search are added to it.",
    "model_spec",
    default="default",
    show_default=True,
)
@click.option(
    "--objective",
    type=click.Choice(["ifeval", "ranking"]),
    required=True,
    help="What the dev split scores: IFEval loose prompt-level accuracy, or ranking accuracy.",
)
@options.out("The fitted TOML (for --rules-config).", required=True)
@click.option("--trials", type=int, default=None, help="Trials in all (a rerun continues the same search).")
@click.option("--minutes", type=float, default=None, help="Stop starting trials after this long.")
@options.seed("Seeds the search's sampler.", 0)
@click.option(
    "--dev-size",
    default=60,
    show_default=True,
    type=click.IntRange(min=2),
    help="Items the search scores on: the first even rows of the objective's data.",
)
@click.option(
    "--test-size",
    type=click.IntRange(min=1),
    default=None,
    help="Items the final comparison scores on: the first odd rows (default: all of them).",
)
@click.option(
    "--behaviour-data",
    type=click.Path(dir_okay=False),
    default=None,
    help="Instructions the constraints are measured on: val, alpaca_eval, ifeval or a JSONL file "
    "(default: val, the paper's 56).",
)
@click.option("--behaviour-size", default=56, show_default=True, type=click.IntRange(min=1))
@click.option("--ifeval-data", type=click.Path(dir_okay=False), default=None, help="IFEval prompts JSONL.")
@click.option(
    "--ranking-data",
    type=click.Path(dir_okay=False),
    default=None,
    help="Instruction-response pairs for --objective ranking (e.g. held-out LIMA rows).",
)
@options.max_tokens(256, "Most tokens a reply may have in a trial.", type=click.IntRange(min=1))
@click.option("--min-stop", default=0.95, show_default=True, help="Constraint: share of replies ending at EOS.")
@click.option("--max-leak", default=0.15, show_default=True, help="Constraint: share starting a role tag.")
@click.option("--max-echo", default=0.05, show_default=True, help="Constraint: share echoing the instruction.")
@options.rules(
    "The rules whose numbers are searched: names from {rule_names}, or all (default: {default_rules}, the "
    "paper's; start adds its scale).",
    "rule_names",
)
@options.threads()
def fit_command(
    model_spec,
    objective,
    out,
    trials,
    minutes,
    seed,
    dev_size,
    test_size,
    behaviour_data,
    behaviour_size,
    ifeval_data,
    ranking_data,
    max_tokens,
    min_stop,
    max_leak,
    max_echo,
    rule_names,
    threads,
):
    """Search the rule expert's numbers on a dev split; report them on a disjoint test split."""
    from ..rules.expert import parse_rule_spec
    from ..runtime.specs import RunOptions, open_spec, resolve_spec
    from .search import Constraints, FitSettings, fit, load_fit_data, objective_data

    if (trials is not None and trials < 1) or (minutes is not None and minutes <= 0) or not (trials or minutes):
        raise UserError("give a budget above zero: --trials N and/or --minutes M")
    behaviour = data_file(behaviour_data or "val", PROMPT_NAMES)
    if not behaviour.is_file():
        raise UserError(f"--behaviour-data {behaviour_data}: no such file")
    parse_rule_spec(rule_names)  # an unknown rule, a missing file or model fails before the model loads
    objective_data(objective, ifeval_data and Path(ifeval_data), ranking_data and Path(ranking_data))
    resolved = resolve_spec(model_spec, RunOptions(threads=threads))
    session = open_spec(resolved).session
    try:
        data = load_fit_data(
            objective,
            behaviour,
            behaviour_size,
            dev_size,
            ifeval_data and Path(ifeval_data),
            ranking_data and Path(ranking_data),
            max_tokens,
            session,
            test_size,
        )
        settings = FitSettings(rule_names, trials, minutes, seed, max_tokens, Constraints(min_stop, max_leak, max_echo))
        result = fit(
            session, data, settings, Path(out), resolved.spec.text, log=lambda text: click.echo(text, err=True)
        )
    finally:
        session.close()
    click.echo(json.dumps(result))


commands = [rules]
