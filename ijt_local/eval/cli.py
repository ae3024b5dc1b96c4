"""Subcommands: compare, and the `eval` group (ifeval, winrate, ranking). Each parses, calls the library,
prints."""

from __future__ import annotations

import json

import click

from .. import cli_options as options
from ..data.home import PROMPT_NAMES, RANKING_NAMES, REFERENCE_ANSWER_NAMES, data_file
from .judge_prompts import DEFAULT_MAX_OUTPUT_TOKENS
from .ranking import DEFAULT_OTHERS

spec_option = options.model(dest="spec", required=True)


def reference_answers_file(value: str | None) -> str | None:
    return None if value is None else str(data_file(value, REFERENCE_ANSWER_NAMES))


threads_option = options.threads()


def _print_table(results: dict) -> None:
    from .metrics import metric_names

    names = metric_names(next(iter(results["models"].values()))["metrics"])
    header = ["model"] + names
    click.echo("  ".join(f"{h:>15}" for h in header))
    for name, entry in results["models"].items():
        m = entry["metrics"]
        cells = [f"{name:>15}"] + [f"{m[k]:>15.1f}" if k == "mean_tokens" else f"{m[k]:>15.3f}" for k in names]
        click.echo("  ".join(cells))
    for name, entry in results["models"].items():
        w = entry.get("winrate")
        if w and w.get("win_rate") is not None:
            se = "" if w["standard_error"] is None else f" ± {w['standard_error']:.3f}"
            lc = w.get("length_controlled_win_rate")
            lc_text = (
                "" if lc is None else (f", length-controlled {lc:.3f} ± {w['length_controlled_standard_error']:.3f}")
            )
            unjudged = (
                ""
                if not w.get("no_reference_answer")
                else f", {w['no_reference_answer']} without a reference answer (not judged)"
            )
            click.echo(
                f"{name} vs {w['reference']}: win rate {w['win_rate']:.3f}{se}{lc_text} "
                f"({w['scored']} scored, {w['invalid_judgements']} invalid judgements{unjudged})"
            )
            if w.get("note"):
                click.echo(f"  note: {w['note']}")


@click.command()
@options.model(
    "A model to compare, NAME=SPEC (repeat); SPEC: " + options.MODEL_SPEC_HELP + ".",
    "models",
    multiple=True,
    required=True,
    metavar="NAME=SPEC",
)
@options.input_file(
    "prompts",
    "Instructions: a set in the data home, or a JSONL file.",
    old=("--prompts",),
    required=True,
)
@options.out("Output folder (a cache: a rerun reuses its generations).", file=False, required=True)
@options.max_tokens()
@options.temperature()
@options.seed()
@options.limit("Only the first N instructions.")
@click.option(
    "--stop-at-role-tags/--no-stop-at-role-tags",
    default=False,
    show_default=True,
    help="End a reply when the model writes a role tag (the paper's generation only stops at EOS).",
)
@threads_option
@options.parallel_option
@options.judge()
@options.judge_prompt_form()
@options.judge_url
@options.judge_model
@click.option(
    "--judge-reference",
    default=None,
    metavar="NAME",
    help="The model every other one is judged against (default: the last --model).",
)
@options.reference_answers
@options.constraint_options
def compare(
    models,
    prompts,
    out,
    max_tokens,
    temperature,
    seed,
    limit,
    stop_at_role_tags,
    threads,
    parallel,
    judge_spec,
    judge_prompt_form,
    judge_url,
    judge_model,
    judge_reference,
    reference_answers,
    constraint,
):
    """Run instructions through several models; write DIR/results.json and DIR/report.html.

    With --json-schema or --grammar every model's replies follow it (a hard expert beside each model's own
    rules), and results.json gives each model's share of replies that complete it."""
    from .compare import run_compare

    prompts = data_file(prompts, PROMPT_NAMES)
    judge = None
    from .judge import make_judge

    pairwise = make_judge(
        judge_spec,
        judge_url,
        judge_model,
        threads=threads,
        prompt_form=judge_prompt_form,
        reference_answers=reference_answers_file(reference_answers),
    )
    if pairwise is not None:
        from .judge import pairwise_judge

        judge = pairwise_judge(pairwise, judge_reference, out)
    results = run_compare(
        list(models),
        prompts,
        out,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        stop_at_role_tags=stop_at_role_tags,
        limit=limit,
        judge=judge,
        threads=threads,
        parallel=parallel,
        constraint=constraint,
    )
    _print_table(results)
    click.echo(f"wrote {out}/results.json and {out}/report.html")


@click.group(name="eval")
def eval_group():
    """Benchmarks: IFEval, pairwise win rate, response ranking."""


@eval_group.command()
@spec_option
@options.data(
    "IFEval prompts JSONL (default: the 541 prompts of the data home's ifeval set).",
    default=None,
    metavar="ifeval|FILE",
)
@options.out("Output folder (a cache: a rerun reuses its generations).", file=False, required=True)
@options.limit("Only the first N prompts.")
@options.max_tokens()
@options.seed()
@threads_option
@options.parallel_option
def ifeval(spec, data, out, limit, max_tokens, seed, threads, parallel):
    """IFEval: prompt- and instruction-level accuracy, strict and loose."""
    from .ifeval.run import run_ifeval

    if data is not None:
        data = data_file(data, ("ifeval",))
    result = run_ifeval(
        spec, out, data=data, limit=limit, max_tokens=max_tokens, seed=seed, threads=threads, parallel=parallel
    )
    click.echo(json.dumps(result["accuracy"], indent=1))


@eval_group.command()
@click.option("--outputs", required=True, type=click.Path(dir_okay=False), help="JSONL: instruction, output")
@click.option(
    "--reference",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="gpt4|gpt4_1106_preview|FILE",
    help="JSONL: instruction, output (e.g. `gpt4`, AlpacaEval's GPT-4 answers in the data home)",
)
@options.judge()
@options.judge_url
@options.judge_model
@options.judge_prompt_form(old=("--prompt-form",))
@click.option(
    "--max-output-tokens",
    default=DEFAULT_MAX_OUTPUT_TOKENS,
    show_default=True,
    type=int,
    help="--judge: each output is cut to this many judge tokens",
)
@options.out("Write DIR/results.json and DIR/judgements.jsonl (one row per instruction).", file=False, default=None)
@click.option(
    "--cache",
    default=None,
    type=click.Path(dir_okay=False),
    help="judgement cache JSONL (default: DIR/judge-cache.jsonl with --out, else beside --outputs)",
)
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="environment variable holding the endpoint's API key, if it needs one",
)
@click.option("--timeout", default=120.0, show_default=True, type=float, help="seconds per request")
@options.limit("Only the first N instructions of --outputs.")
@options.reference_answers
@threads_option
def winrate(
    outputs,
    reference,
    judge_spec,
    judge_url,
    judge_model,
    judge_prompt_form,
    max_output_tokens,
    out,
    cache,
    api_key_env,
    timeout,
    limit,
    reference_answers,
    threads,
):
    """Pairwise win rate of OUTPUTS against REFERENCE, judged in both orders, with a length-controlled win
    rate. With --reference-answers the judgement is reference-guided (default judge: chrf1)."""
    from ..errors import UserError
    from .judge import run_winrate

    reference = data_file(reference, REFERENCE_ANSWER_NAMES)
    from .judge import make_judge

    judge = make_judge(
        judge_spec,
        judge_url,
        judge_model,
        threads=threads,
        prompt_form=judge_prompt_form,
        max_output_tokens=max_output_tokens,
        api_key_env=api_key_env,
        timeout=timeout,
        reference_answers=reference_answers_file(reference_answers),
    )
    if judge is None:
        raise UserError(
            "give --judge SPEC (in-process, e.g. --judge judge), --judge-url URL or --reference-answers FILE"
        )
    try:
        result = run_winrate(outputs, reference, judge, cache=cache, limit=limit, out_dir=out)
    finally:
        judge.close()
    click.echo(json.dumps(result, indent=1))


@eval_group.command()
@spec_option
@options.data(
    "JSONL of instruction + response (messages, instruction/output, prompt/completion); `lima`: the data "
    "home's LIMA conversations.",
    required=True,
    metavar="lima|FILE",
)
@options.out("Score cache JSONL (a rerun resumes it).", default=None)
@options.limit("Only the first N pairs.")
@options.seed("Picks the random other responses.", 0)
@click.option(
    "--others",
    default=DEFAULT_OTHERS,
    show_default=True,
    type=click.IntRange(min=1),
    help="random other responses per instruction, each one (real, random) pair (the paper: 5)",
)
@click.option(
    "--max-response-tokens",
    default=512,
    show_default=True,
    type=int,
    help="responses are cut to this many tokens before scoring",
)
@threads_option
def ranking(spec, data, out, limit, seed, others, max_response_tokens, threads):
    """Response ranking (paper §4.2): the share of (real, random) response pairs in which an instruction's own
    response outscores a random other one."""
    from .ranking import run_ranking

    result = run_ranking(
        spec,
        data_file(data, RANKING_NAMES),
        out=out,
        limit=limit,
        seed=seed,
        others=others,
        max_response_tokens=max_response_tokens,
        threads=threads,
    )
    click.echo(json.dumps(result, indent=1))


commands: list = [compare, eval_group]
