"""Subcommands: compare, and the `eval` group (ifeval, winrate, ranking). Each parses, calls the library,
prints."""

from __future__ import annotations

import json

import click

from ..runtime_cli import parallel_option

MODEL_SPEC_HELP = (
    "default | smollm2-135m-instruct | FILE.gguf | owner/repo:file.gguf, optionally +adapter.gguf[@scale] "
    "and +poe[:eos,uniform,diversity,start]"
)
spec_option = click.option("--model", "spec", required=True, metavar="SPEC", help=MODEL_SPEC_HELP)
threads_option = click.option("--threads", type=int, default=None,
                              help="llama.cpp threads (default: all cores; 1 is much faster on a busy machine)")


def _print_table(results: dict) -> None:
    from .metrics import metric_names

    names = metric_names(next(iter(results["models"].values()))["metrics"])
    header = ["model"] + names
    click.echo("  ".join(f"{h:>15}" for h in header))
    for name, entry in results["models"].items():
        m = entry["metrics"]
        cells = [f"{name:>15}"] + [
            f"{m[k]:>15.1f}" if k == "mean_tokens" else f"{m[k]:>15.3f}" for k in names
        ]
        click.echo("  ".join(cells))
    for name, entry in results["models"].items():
        w = entry.get("winrate")
        if w and w.get("win_rate") is not None:
            se = "" if w["standard_error"] is None else f" ± {w['standard_error']:.3f}"
            click.echo(f"{name} vs {w['reference']}: win rate {w['win_rate']:.3f}{se} "
                       f"({w['scored']} scored, {w['invalid_judgements']} invalid judgements)")


@click.command()
@click.option("--model", "models", multiple=True, required=True, metavar="NAME=SPEC",
              help=f"a model to compare (repeat); SPEC: {MODEL_SPEC_HELP}")
@click.option("--prompts", required=True, type=click.Path(dir_okay=False), help="instructions, JSONL")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output directory (cache)")
@click.option("--max-tokens", default=512, show_default=True, type=int)
@click.option("--temperature", default=0.0, show_default=True, type=float, help="0 = greedy")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--limit", type=int, default=None, help="only the first N instructions")
@click.option("--stop-at-role-tags/--no-stop-at-role-tags", default=False, show_default=True,
              help="end a reply when the model writes a role tag (the paper's generation only stops at EOS)")
@threads_option
@parallel_option
@click.option("--judge-url", default=None, help="OpenAI-compatible endpoint for pairwise win rates")
@click.option("--judge-model", default=None, help="judge model name at --judge-url")
@click.option("--judge-reference", default=None, metavar="NAME",
              help="the model every other one is judged against (default: the last --model)")
def compare(models, prompts, out, max_tokens, temperature, seed, limit, stop_at_role_tags, threads, parallel,
            judge_url, judge_model, judge_reference):
    """Run instructions through several models; write DIR/results.json and DIR/report.html."""
    from .compare import run_compare

    judge = None
    if judge_url:
        from .judge import compare_judge

        judge = compare_judge(judge_url, judge_model, judge_reference, out)
    results = run_compare(list(models), prompts, out, max_tokens=max_tokens, temperature=temperature,
                          seed=seed, stop_at_role_tags=stop_at_role_tags, limit=limit, judge=judge,
                          threads=threads, parallel=parallel)
    _print_table(results)
    click.echo(f"wrote {out}/results.json and {out}/report.html")


@click.group(name="eval")
def eval_group():
    """Benchmarks: IFEval, pairwise win rate, response ranking."""


@eval_group.command()
@spec_option
@click.option("--data", default=None, type=click.Path(dir_okay=False),
              help="IFEval prompts JSONL (default: the 541 prompts under ../shared/data/ifeval)")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output directory (cache)")
@click.option("--limit", type=int, default=None, help="only the first N prompts")
@click.option("--max-tokens", default=512, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@threads_option
@parallel_option
def ifeval(spec, data, out, limit, max_tokens, seed, threads, parallel):
    """IFEval: prompt- and instruction-level accuracy, strict and loose."""
    from .ifeval.run import run_ifeval

    result = run_ifeval(spec, out, data=data, limit=limit, max_tokens=max_tokens, seed=seed, threads=threads,
                        parallel=parallel)
    click.echo(json.dumps(result["accuracy"], indent=1))


@eval_group.command()
@click.option("--outputs", required=True, type=click.Path(dir_okay=False), help="JSONL: instruction, output")
@click.option("--reference", required=True, type=click.Path(dir_okay=False), help="JSONL: instruction, output")
@click.option("--judge-url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
@click.option("--judge-model", default="judge", show_default=True, help="model name sent to the endpoint")
@click.option("--cache", default=None, type=click.Path(dir_okay=False),
              help="judgement cache JSONL (default: beside --outputs)")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="environment variable holding the endpoint's API key, if it needs one")
@click.option("--timeout", default=120.0, show_default=True, type=float, help="seconds per request")
@click.option("--limit", type=int, default=None, help="only the first N shared instructions")
def winrate(outputs, reference, judge_url, judge_model, cache, api_key_env, timeout, limit):
    """Pairwise win rate of OUTPUTS against REFERENCE, judged in both orders."""
    from .judge import OpenAIJudge, run_winrate

    judge = OpenAIJudge(judge_url, judge_model, api_key_env=api_key_env, timeout=timeout)
    result = run_winrate(outputs, reference, judge, cache=cache, limit=limit)
    click.echo(json.dumps(result, indent=1))


@eval_group.command()
@spec_option
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="JSONL of instruction + response (messages, instruction/output, prompt/completion)")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="score cache JSONL")
@click.option("--limit", type=int, default=None, help="only the first N pairs")
@click.option("--seed", default=0, show_default=True, type=int, help="picks the random other responses")
@click.option("--max-response-tokens", default=512, show_default=True, type=int,
              help="responses are cut to this many tokens before scoring")
@threads_option
def ranking(spec, data, out, limit, seed, max_response_tokens, threads):
    """Response ranking (paper §4.2): how often an instruction's own response outscores a random other one."""
    from .ranking import run_ranking

    result = run_ranking(spec, data, out=out, limit=limit, seed=seed, max_response_tokens=max_response_tokens,
                         threads=threads)
    click.echo(json.dumps(result, indent=1))


commands: list = [compare, eval_group]
