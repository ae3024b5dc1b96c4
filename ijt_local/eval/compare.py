"""`ijt-local compare`: the same instructions through several models, cached per model, measured, and
shown side by side.

    DIR/generations/NAME.jsonl       one row per instruction (resumable), NAME.meta.json its settings
    DIR/results.json                 {"models": {NAME: {"spec", "metrics", "generation"}}, "prompts", ...}
    DIR/report.html                  static page: metrics, plots, all outputs side by side
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..jsonl import write_atomic
from ..runtime.specs import RunOptions, parse_named_specs, resolve_spec
from .generations import cached_rows, generate_cached
from .metrics import DEFINITIONS, behaviour_metrics
from .prompt_sets import load_prompts
from .report import render_report


def generation_summary(rows: list[dict]) -> dict:
    """Tokens, wall seconds (each row holds the wall time since the row before it) and aggregate tok/s."""
    seconds = sum(r.get("seconds", 0.0) for r in rows)
    tokens = sum(r["n_tokens"] for r in rows)
    return {
        "outputs": len(rows),
        "tokens": tokens,
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
    }


def run_compare(
    model_pairs: list[str],
    prompts_path: str | Path,
    out_dir: str | Path,
    max_tokens: int = 512,
    temperature: float = 0.0,
    seed: int = 0,
    stop_at_role_tags: bool = False,
    limit: int | None = None,
    judge=None,
    threads: int | None = None,
    log=None,
    parallel: int | None = None,
    constraint: tuple[str, str] | None = None,
) -> dict:
    """Generate what is missing, then rebuild results.json and report.html from the cache.

    `judge`, when given, is a callable (generations: dict[name, rows]) -> {name: winrate dict}.
    `constraint`: ("json_schema" | "gbnf", FILE) every reply must follow."""
    if max_tokens < 1:
        raise UserError("--max-tokens must be at least 1")
    named = parse_named_specs(model_pairs)
    prompts = load_prompts(prompts_path, limit=limit)
    out_dir = Path(out_dir)
    options = RunOptions(threads=threads)
    resolved = {}  # every model that has replies to write must exist before hours of generation start
    for name, spec in named:
        if not cached_rows(out_dir / "generations" / f"{name}.jsonl", prompts).keys() >= {p.id for p in prompts}:
            resolved[name] = resolve_spec(spec, options)
    generations = {}
    for name, spec in named:
        generations[name] = generate_cached(
            resolved.get(name, spec),
            prompts,
            out_dir / "generations" / f"{name}.jsonl",
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            stop_at_role_tags=stop_at_role_tags,
            label=name,
            options=options,
            log=log,
            parallel=parallel,
            constraint=constraint,
        )
    results = {
        "models": {
            name: {
                "spec": spec.text,
                "model": spec.describe(),
                "metrics": behaviour_metrics(generations[name]),
                "generation": generation_summary(generations[name]),
                **(
                    {"grammar_complete": sum(bool(r.get("grammar_complete")) for r in generations[name])}
                    if constraint
                    else {}
                ),
            }
            for name, spec in named
        },
        "prompts": {"path": _input_name(prompts_path), "count": len(prompts)},
        "settings": {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": seed,
            "stop_at_role_tags": stop_at_role_tags,
            **({"constraint": {"kind": constraint[0], "path": str(constraint[1])}} if constraint else {}),
        },
        "definitions": DEFINITIONS,
    }
    write_results(out_dir, results, generations)
    if judge is not None:  # after a first write, so an unreachable judge still leaves results and report
        for name, winrate in judge(generations).items():
            results["models"][name]["winrate"] = winrate
        write_results(out_dir, results, generations)
    return results


def write_results(out_dir: Path, results: dict, generations: dict[str, list[dict]]) -> None:
    write_atomic(out_dir / "results.json", json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    write_atomic(out_dir / "report.html", render_report(results, generations))


def _input_name(path) -> str:
    """The prompts file as results.json records it: a data-home set by its place there (results written
    on one machine read the same on another), any other file by its path."""
    from ..data.home import data_home

    path = Path(path).absolute()
    if path.is_relative_to(data_home()):
        return f"{path.relative_to(data_home()).as_posix()} (the data home)"
    return str(path)
