"""Subcommands that run models: models, chat, generate."""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

import click

from .. import cli_options
from ..cli_options import exact_option
from ..errors import UserError

model_options = cli_options.together(cli_options.model_options, cli_options.sampling_options)
"""Options shared by every command that opens a Session (ijt_local/cli_options.py declares them)."""


def adapter_option(text: str) -> tuple[str, float]:
    from .specs import parse_adapter

    adapter = parse_adapter(text)
    if adapter is None:
        raise UserError(f"--adapter {text}: expected a GGUF LoRA file, path/to/adapter.gguf[@scale]")
    return adapter


def run_options(opts: dict):
    """The RunOptions the shared model options name."""
    from .specs import RunOptions

    return RunOptions(
        n_ctx=opts["n_ctx"],
        threads=opts["threads"],
        gpu_layers=opts["gpu_layers"],
        template=opts["template"],
        rules_config=opts["rules_config"],
        paper_exact=opts["paper_exact"],
        poe=opts["poe"] or bool(opts["rules_config"]),  # a rules config asks for the rules it configures
        rules=opts["rule_spec"],
        adapters=tuple(adapter_option(a) for a in opts["adapters"]),
    )


def sampling_params(opts: dict):
    from .session import SamplingParams

    return SamplingParams(opts["temperature"], opts["top_p"], opts["top_k"], opts["seed"])


def open_model(resolved):
    """Load a resolved SPEC, saying which rule words have no single token in this vocabulary."""
    from .specs import open_spec

    loaded = open_spec(resolved)
    if loaded.rules is not None:
        unresolved = loaded.session.rule_expert(loaded.rules).unresolved
        if unresolved:
            click.echo(f"rules: no single token for {', '.join(map(repr, sorted(unresolved)))}", err=True)
    return loaded


@click.command()
def models():
    """List the named models with their path, size, architecture and vocabulary size."""
    from ..models import NAMED_MODELS

    for name, (locate, template, about) in NAMED_MODELS.items():
        try:
            info = describe_gguf(locate())
        except UserError as exc:
            click.echo(f"{name}\n  {about}\n  not available: {exc}")
            continue
        click.echo(
            f"{name}\n  {about}\n  path: {info['path']}\n  size: {info['size_mb']} MB, "
            f"architecture: {info['architecture']}, vocab: {info['vocab_size']}, template: {template}"
        )


@click.command()
@model_options
@click.option(
    "--independent",
    is_flag=True,
    help="Each input line is a fresh one-turn conversation (for a file of unrelated questions).",
)
@exact_option
def chat(independent, exact, **opts):
    """Chat with a model in the terminal (streaming; /reset, /quit, Ctrl-D).

    Input lines are the user's messages in one conversation, typed or piped alike: each reply sees the
    conversation so far (see --history). With --independent every line is answered on its own."""
    from .conversation import generate_reply
    from .specs import resolve_spec

    loaded = open_model(resolve_spec(opts["model"], run_options(opts)))
    session, rules, sampling, name = loaded.session, loaded.rules, sampling_params(opts), loaded.name
    interactive = sys.stdin.isatty()
    if interactive:
        mode = "each line is answered on its own" if independent else "/reset clears the history"
        click.echo(f"{name} — {mode}, /quit or Ctrl-D leaves.", err=True)
    history: list[dict] = []
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/quit":
            break
        if text == "/reset" or independent:
            history = []
            if text == "/reset":
                click.echo("(history cleared)", err=True)
                continue
        history.append({"role": "user", "content": text})
        generation = generate_reply(
            session,
            history,
            rules,
            opts["history"],
            exact,
            max_tokens=opts["max_tokens"],
            sampling=sampling,
            on_text=lambda piece: click.echo(piece, nl=False),
        )
        click.echo()
        history.append({"role": "assistant", "content": generation.text})
        click.echo(
            f"[{generation.n_tokens} tokens, {generation.tokens_per_second:.1f} tok/s, {generation.finish_reason}]",
            err=True,
        )


@click.command()
@model_options
@click.option("--prompt", default=None, help="One instruction; the reply is printed.")
@cli_options.input_file(
    "input_path",
    "JSONL of instructions (`instruction`, `messages` or multi-turn `turns` rows), or a set in the data home.",
)
@cli_options.out(
    "JSONL to append results to; rows already there from the same model are skipped (resume).",
    "output_path",
    old=("--output",),
)
@cli_options.constraint_options
@cli_options.parallel(batch_invariant=True)
@exact_option
def generate(prompt, input_path, output_path, constraint, parallel, exact, **opts):
    """Generate replies for one prompt or a JSONL file of instructions (AlpacaEval-style output).

    Example: ijt-local generate -m default+poe --json-schema person.json --prompt "Describe a person as JSON." """
    if (prompt is None) == (input_path is None):
        raise UserError("give either --prompt TEXT or --input F.jsonl|val|alpaca_eval|ifeval --out F.jsonl")
    if input_path is not None and output_path is None:
        raise UserError("--input needs --out")
    if prompt is not None:
        from .conversation import generate_reply
        from .grammar import constraint_scores
        from .specs import resolve_spec

        loaded = open_model(resolve_spec(opts["model"], run_options(opts)))
        scores = constraint_scores(loaded.session, constraint)
        generation = generate_reply(
            loaded.session,
            [{"role": "user", "content": prompt}],
            loaded.rules,
            None,
            exact,
            max_tokens=opts["max_tokens"],
            sampling=sampling_params(opts),
            on_text=lambda piece: click.echo(piece, nl=False),
            scores=scores,
        )
        click.echo()
        if scores is not None and not scores.grammar.complete(generation.tokens):
            click.echo(f"the reply does not complete the grammar ({generation.finish_reason})", err=True)
        return
    from ..data.home import PROMPT_NAMES, data_file

    rows = load_instructions(data_file(input_path, PROMPT_NAMES))
    _generate_file(rows, Path(output_path), opts, parallel, exact, constraint)


def load_instructions(path) -> list[tuple[str, list[dict], list[str] | None]]:
    """(instruction text, messages, turns or None) per row; file:line on a bad row. A `turns` row is
    answered turn by turn; its instruction is the last turn."""
    from ..jsonl import iter_numbered_jsonl
    from ..prompts import instruction_messages, parse_turns

    rows = []
    for lineno, row in iter_numbered_jsonl(path):
        try:
            turns = parse_turns(row)
            messages = instruction_messages(row) if turns is None else []
        except ValueError as exc:
            raise UserError(f"{path}:{lineno}: {exc}") from None
        if turns is not None:
            rows.append((turns[-1], messages, turns))
            continue
        if messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]  # a reference answer is not part of the prompt
        if not messages:
            raise UserError(f"{path}:{lineno}: no user turn")
        rows.append((messages[-1]["content"] if "instruction" not in row else row["instruction"], messages, None))
    if not rows:
        raise UserError(f"{path}: no instructions")
    return rows


def _row_key(instruction, turns) -> tuple:
    return instruction, tuple(turns) if turns else None


def _generate_file(
    rows, output_path: Path, opts: dict, parallel: int | None, exact: bool = False, constraint=None
) -> None:
    """Append a row per instruction as each reply finishes (any order when decoding in parallel, so an
    interruption loses no finished row), then put the file in input order."""
    from tqdm import tqdm

    from ..jsonl import JsonlAppender, read_completed_rows
    from .conversation import answer_turns, turns_to_answer
    from .specs import resolve_spec

    resolved = resolve_spec(opts["model"], run_options(opts))
    name = resolved.name
    existing = read_completed_rows(output_path)
    others = sorted({row["generator"] for row in existing if row.get("generator", name) != name})
    if others:
        raise UserError(
            f"{output_path} holds replies from {', '.join(others)}, not {name}; "
            "give another --out (or delete the file) to generate with this model"
        )
    done = collections.Counter(_row_key(row.get("instruction"), row.get("turns")) for row in existing)
    todo = []
    for instruction, messages, turns in rows:
        if done[_row_key(instruction, turns)] > 0:
            done[_row_key(instruction, turns)] -= 1
        else:
            todo.append((instruction, messages, turns))
    if not todo:
        click.echo(f"{output_path}: all {len(rows)} rows already generated", err=True)
        return
    loaded = open_model(resolved)
    session, rules, sampling = loaded.session, loaded.rules, sampling_params(opts)
    from .grammar import constraint_scores

    scores = constraint_scores(session, constraint)
    stops = tokens = 0
    started = time.perf_counter()
    prompts = [turns_to_answer(messages, turns) for _, messages, turns in todo]
    replies = answer_turns(
        session,
        prompts,
        rules,
        opts["history"],
        parallel,
        exact=exact,
        max_tokens=opts["max_tokens"],
        sampling=sampling,
        scores=scores,
    )
    with JsonlAppender(output_path) as out, tqdm(replies, total=len(todo), desc=name, unit="row") as bar:
        for written, (index, generations) in enumerate(bar, 1):  # bar.n lags inside a fast loop
            instruction, _, turns = todo[index]
            generation = generations[-1]
            row = {
                "instruction": instruction,
                "output": generation.text,
                "generator": name,
                "finish_reason": generation.finish_reason,
                "n_tokens": generation.n_tokens,
            }
            if turns:
                row |= {"turns": turns, "outputs": [g.text for g in generations]}
            if scores is not None:
                row["grammar_complete"] = scores.grammar.complete(generation.tokens)
            out.write(row)
            stops += generation.finish_reason == "stop"
            tokens += sum(g.n_tokens for g in generations)
            bar.set_postfix(stop=f"{stops}/{written}", tok_s=f"{tokens / (time.perf_counter() - started):.0f}")
    _sort_like_input(output_path, [_row_key(instruction, turns) for instruction, _, turns in rows])
    click.echo(f"{output_path}: {len(todo)} rows written ({stops} stopped on their own)", err=True)


def _sort_like_input(path: Path, keys: list[tuple]) -> None:
    """Rewrite `path` (atomically) with its rows in the order of the input rows' `keys`; rows that match no
    input row stay first, as they were."""
    import json

    from ..jsonl import read_completed_rows, write_atomic

    by_key = collections.defaultdict(collections.deque)
    rows = read_completed_rows(path)
    for row in rows:
        by_key[_row_key(row.get("instruction"), row.get("turns"))].append(row)
    ordered = [by_key[key].popleft() for key in keys if by_key[key]]
    others = [row for queue in by_key.values() for row in queue]
    if others + ordered != rows:
        write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in others + ordered))


def describe_gguf(path: Path) -> dict:
    """Architecture, vocabulary size, size on disk: read by llama.cpp with the vocabulary only."""
    from ..models import check_gguf
    from .llama import read_metadata

    check_gguf(path)
    metadata, n_vocab = read_metadata(path)
    return {
        "path": str(path),
        "size_mb": round(path.stat().st_size / 2**20, 1),
        "architecture": metadata.get("general.architecture"),
        "vocab_size": n_vocab,
        "name": metadata.get("general.name"),
    }


@click.group()
def check():
    """Checks of what this machine's llama.cpp does with a model (see `check invariance`)."""


@check.command("invariance")
@cli_options.model(default="default", show_default=True)
@click.option("--num-prompts", "count", default=8, show_default=True, help="Prompts to check (at most 8).")
@cli_options.max_tokens(default=48, help="Most tokens each reply may have.")
@cli_options.ctx()
@cli_options.threads()
@cli_options.gpu_layers
@cli_options.widths
@click.option("--reprobe", is_flag=True, help="Probe the row counts again instead of reading the cache.")
def check_invariance(model, count, max_tokens, n_ctx, threads, gpu_layers, widths, reprobe):
    """Probe which llama_decode row counts give identical logits for this model here, then prove replies do
    not depend on the batch: each prompt at several widths (by default 1, 2, 3, 8, 16 and 32) in shuffled orders, some
    sharing a prefix, beside other prompts, greedy and seeded. Prints the distinct replies per prompt (1
    everywhere passes) and exits 1 otherwise."""
    from .certificate import FILLERS, PROMPTS, certificate_prompts, check_invariance
    from .llama import backend_identity
    from .row_probe import PROBE_ROWS, PROMPT_ROWS, forget_probe
    from .specs import RunOptions, resolve_spec

    if not 1 <= count <= len(PROMPTS):
        raise UserError(f"--num-prompts must be 1 to {len(PROMPTS)} (got {count})")
    loaded = open_model(resolve_spec(model, RunOptions(n_ctx=n_ctx, threads=threads, gpu_layers=gpu_layers)))
    session = loaded.session
    if reprobe:
        forget_probe(session.llama)
    system = backend_identity()
    click.echo(f"{loaded.name}: {session.model.path.name}, llama-cpp-python {system['llama_cpp_python']}")
    click.echo(f"  {system['system']}")
    probe = session.row_probe
    source = "cached" if probe.cached else f"{probe.seconds:.1f} s"
    click.echo(f"probe ({source}): {probe.summary()}")
    click.echo(f"  decode steps whose rows equal a {PROBE_ROWS}-row step's: {_span(probe.steps_like_widest)} rows")
    click.echo(f"  prompt calls whose rows equal a {PROMPT_ROWS}-row call's: {_span(probe.prompts_like_widest)} rows")
    padded = probe.plan.step_rows(1)
    click.echo(f"  a lone step: one row {probe.one_row_ms:.1f} ms, padded to {padded} rows {probe.padded_ms:.1f} ms")
    default = "batch-invariant" if session.batch_invariant_by_default() else "fast (one-row steps)"
    click.echo(f"  chat and generate --prompt decode {default} by default")
    prompts = certificate_prompts(count)
    started = time.perf_counter()
    checks = check_invariance(
        session,
        prompts,
        loaded.rules,
        max_tokens,
        widths,
        on_run=lambda mode, width: click.echo(f"  {mode}: {f'width {width}' if width else 'one-row path'}", err=True),
    )
    seconds = time.perf_counter() - started
    listed = " ".join(map(str, widths))
    click.echo(f"{len(prompts)} prompts at widths {listed}, shuffled, beside {len(FILLERS)} others ({seconds:.0f} s):")
    for check in checks:
        verdict = "pass" if check.passed else "FAIL"
        click.echo(
            f"  {check.mode}: unique replies per prompt {' '.join(map(str, check.unique))}: {verdict}"
            f" (the one-row path gives the same reply for {check.fast_matches} of {len(prompts)})"
        )
    if not all(check.passed for check in checks):
        raise SystemExit(1)


def _span(numbers: list[int]) -> str:
    """'4-7,9' for [4, 5, 6, 7, 9]; 'none' for []."""
    if not numbers:
        return "none"
    runs, start = [], numbers[0]
    for previous, current in zip(numbers, numbers[1:] + [None]):
        if current != previous + 1:
            runs.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ",".join(runs)


commands = [models, chat, generate, check]
