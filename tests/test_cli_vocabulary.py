"""One name per concept in every verb. The walk below visits every click command of `ijt-local` and holds
them to a small table of concepts: two options with the same meaning must have the same name, and a name
two verbs share must mean one thing, declared once in ijt_local/cli_options.py. An old spelling still
parses for one release, with one deprecation line; given with the new name it is one error line."""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict

import click
import pytest
from click.testing import CliRunner

from ijt_local import cli_options
from ijt_local.cli import cli
from ijt_local.cli_options import ConceptOption

# concept: (the name in every verb, its short names, old spellings that parse until they go, what it means)
CONCEPTS = {
    "model": ("--model", {"-m"}, (), "the model SPEC a verb runs (NAME=SPEC where it runs several)"),
    "adapter": ("--adapter", set(), (), "a LoRA adapter (a GGUF file at run time, a PEFT folder for merge)"),
    "template": ("--template", set(), (), "the chat template"),
    "poe": ("--poe", set(), (), "the rule expert on"),
    "rules": ("--rules", set(), (), "a rule set, as +poe:RULES names it"),
    "rules_config": ("--rules-config", set(), (), "a TOML file of rule numbers"),
    "paper_exact": ("--paper-exact", set(), (), "the paper code's EOS bonus"),
    "ctx": ("--ctx", set(), (), "tokens a conversation (a request) holds"),
    "threads": ("--threads", set(), (), "CPU threads"),
    "gpu_layers": ("--gpu-layers", set(), (), "layers offloaded to the GPU"),
    "temperature": ("--temperature", set(), ("--temp",), "sampling temperature (llama.cpp, mlx-lm, OpenAI)"),
    "top_p": ("--top-p", set(), (), "nucleus sampling"),
    "top_k": ("--top-k", set(), (), "top-k sampling"),
    "seed": ("--seed", set(), (), "the seed of the verb's randomness"),
    "max_tokens": ("--max-tokens", set(), (), "a reply's length budget"),
    "history": ("--history", set(), (), "earlier exchanges a reply sees"),
    "parallel": ("--parallel", set(), (), "sequences decoded at once in one llama.cpp batch"),
    "widths": ("--widths", set(), (), "the batch widths a check decodes each prompt at"),
    "batch_invariant": ("--batch-invariant", set(), (), "a lone reply decoded as batched decoding does"),
    "input": ("--input", set(), ("--prompts",), "the instructions a verb answers: a data-home set or JSONL"),
    "out": ("--out", set(), ("--output",), "where a verb writes"),
    "data": ("--data", set(), (), "the data set a verb trains on or scores"),
    "limit": ("--limit", set(), (), "only the first N rows"),
    "data_root": ("--data-root", set(), (), "the data home"),
    "base": ("--base", set(), (), "the base model a verb trains, merges onto, exports for or replicates with"),
    "outtype": ("--outtype", set(), (), "how a written GGUF stores its matrices"),
    "quantize": ("--quantize", set(), ("--type",), "a llama.cpp quantization type (quantize's TYPE argument)"),
    "judge": ("--judge", set(), (), "the in-process (or reference) judge"),
    "judge_url": ("--judge-url", set(), (), "an OpenAI-compatible judge endpoint"),
    "judge_model": ("--judge-model", set(), (), "the model name sent to --judge-url"),
    "judge_prompt_form": ("--judge-prompt-form", set(), ("--prompt-form",), "how the judge is asked"),
    "reference_answers": ("--reference-answers", set(), (), "a reference answer per instruction"),
    "json_schema": ("--json-schema", set(), (), "a JSON schema every reply follows (a hard expert)"),
    "grammar": ("--grammar", set(), (), "a GBNF grammar every reply follows (a hard expert)"),
}

# runtime/specs.py's RunOptions, the one road from a SPEC to a session: each field is a concept's option
RUN_OPTIONS = {
    "n_ctx": "ctx",
    "threads": "threads",
    "gpu_layers": "gpu_layers",
    "template": "template",
    "rules_config": "rules_config",
    "paper_exact": "paper_exact",
    "poe": "poe",
    "rules": "rules",
    "adapters": "adapter",
}

OLD_SPELLINGS = {old: concept for concept, (_, _, olds, _) in CONCEPTS.items() for old in olds}
NAMES = {name: concept for concept, (name, _, _, _) in CONCEPTS.items()}


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    for name in sorted(group.list_commands(None)):
        command = group.get_command(None, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def options():
    """(verb, option) for every option of every verb, hidden ones included."""
    for verb, command in commands():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                yield verb, param


def long_name(param: click.Option) -> str:
    return next(name for name in param.opts if name.startswith("--"))


def concept_of(param: click.Option) -> str | None:
    return param.concept if isinstance(param, ConceptOption) else None


def vocabulary_faults() -> list[str]:
    """Every way the verbs break the table, one line each."""
    faults = []
    users = defaultdict(set)  # long name -> verbs that take it
    dests = defaultdict(set)  # concept -> the parameter names its options fill
    for _, param in options():
        concept = concept_of(param)
        if concept is not None:
            dests[concept].add(param.name)
    for verb, param in options():
        name, concept = long_name(param), concept_of(param)
        if param.hidden and param.name and param.name.startswith("old_"):
            if name not in OLD_SPELLINGS:
                faults.append(f"{verb} {name}: a hidden old spelling the table does not list")
            continue
        users[name].add(verb)
        if concept is None:
            meaning = NAMES.get(name) or OLD_SPELLINGS.get(name)
            if meaning is not None:
                faults.append(
                    f"{verb} {name}: declared by the verb itself; {CONCEPTS[meaning][0]} means "
                    f"{CONCEPTS[meaning][3]} and comes from ijt_local/cli_options.py"
                )
            for other, names in dests.items():
                if param.name in names:
                    faults.append(
                        f"{verb} {name} fills `{param.name}` as {CONCEPTS[other][0]} does elsewhere: same "
                        f"meaning, another name"
                    )
            continue
        if concept not in CONCEPTS:
            faults.append(f"{verb} {name}: concept {concept!r} is not in the table")
            continue
        canonical, shorts, olds, _ = CONCEPTS[concept]
        if name != canonical:
            faults.append(f"{verb} {name}: {CONCEPTS[concept][3]} is {canonical} in the other verbs")
        given_shorts = {n for n in param.opts + param.secondary_opts if not n.startswith("--")}
        if given_shorts != shorts:
            faults.append(f"{verb} {name}: short names {sorted(given_shorts)}, the table says {sorted(shorts)}")
        unknown_old = {spelling for spelling, _ in param.old} - set(olds)
        if unknown_old:
            faults.append(f"{verb} {name}: old spellings {sorted(unknown_old)} are not in the table")
    for name, verbs in sorted(users.items()):
        if len(verbs) > 1 and name not in NAMES:
            faults.append(f"{name} is taken by {', '.join(sorted(verbs))}: give it one meaning in the concept table")
    return faults


def test_the_walk_sees_every_verb_and_option():
    verbs = {verb for verb, _ in commands()}
    assert {"chat", "generate", "compare", "eval winrate", "replicate", "serve", "rules fit", "train"} <= verbs
    assert sum(1 for _ in options()) > 150


def test_one_name_per_concept_and_one_meaning_per_name():
    faults = vocabulary_faults()
    assert not faults, "\n".join(faults)


def test_every_concept_in_the_table_is_used():
    used = {concept_of(param) for _, param in options()} - {None}
    assert used == set(CONCEPTS)


def test_run_options_fields_are_the_model_options():
    """Every field of RunOptions (runtime/specs.py) has its option among those chat and generate share."""
    from ijt_local.runtime.specs import RunOptions

    assert {field.name for field in dataclasses.fields(RunOptions)} == set(RUN_OPTIONS)
    for verb in ("chat", "generate"):
        command = cli.get_command(None, verb)
        taken = {concept_of(param) for param in command.params}
        assert set(RUN_OPTIONS.values()) <= taken, verb


def test_temperature_and_the_judge_prompt_form_are_one_name_in_every_verb():
    by_concept = defaultdict(set)
    for verb, param in options():
        if concept_of(param) in ("temperature", "judge_prompt_form"):
            by_concept[concept_of(param)].add((verb, long_name(param)))
    assert by_concept["temperature"] == {(v, "--temperature") for v in ("chat", "generate", "compare")}
    assert by_concept["judge_prompt_form"] == {
        (v, "--judge-prompt-form") for v in ("compare", "eval winrate", "replicate")
    }


# ---- old spellings ------------------------------------------------------------------------------------


@click.command()
@cli_options.temperature(old=("--temp",))
def sampled(temperature):
    click.echo(f"temperature={temperature}")


def test_an_old_spelling_parses_with_one_deprecation_line():
    result = CliRunner().invoke(sampled, ["--temp", "0.7"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "temperature=0.7\n"
    assert result.stderr == "warning: --temp is deprecated and goes in 0.3; use --temperature\n"
    assert CliRunner().invoke(sampled, ["--temperature", "0.7"]).output == "temperature=0.7\n"


@pytest.mark.parametrize(
    "args,old,new",
    [
        (["generate", "--temp", "0.5", "--temperature", "0.3"], "--temp", "--temperature"),
        (["generate", "--input", "val", "--output", "a.jsonl", "--out", "b.jsonl"], "--output", "--out"),
        (["compare", "-m", "a=default", "--prompts", "val", "--input", "val", "--out", "x"], "--prompts", "--input"),
        (
            ["eval", "winrate", "--outputs", "a", "--reference", "b", "--prompt-form", "direct"]
            + ["--judge-prompt-form", "rubric"],
            "--prompt-form",
            "--judge-prompt-form",
        ),
    ],
)
def test_both_spellings_are_one_error_line(args, old, new):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert result.stderr == f"Error: {old} is the old spelling of {new}: give {new} once\n"


def test_an_old_spelling_reaches_the_verb(tmp_path):
    """`eval winrate --prompt-form` is read as --judge-prompt-form (here it fails later, on the judge)."""
    result = CliRunner().invoke(
        cli, ["eval", "winrate", "--outputs", "a", "--reference", "b", "--prompt-form", "direct", "--judge", "chrf1"]
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "warning: --prompt-form is deprecated and goes in 0.3; use --judge-prompt-form",
        "Error: --judge chrf1 compares replies with reference answers: give --reference-answers FILE",
    ]


# ---- help that says what the code does -------------------------------------------------------------------


def help_text(*verb: str) -> str:
    result = CliRunner().invoke(cli, [*verb, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_help_shows_the_defaults_the_code_runs_with():
    from ijt_local.eval.judge_prompts import DEFAULT_FORM, REFERENCE_FORM
    from ijt_local.rules.expert import DEFAULT_RULES, RULE_NAMES
    from ijt_local.runtime.batch import DEFAULT_PARALLEL
    from ijt_local.runtime.session import THREAD_CHECK_SECONDS, SamplingParams
    from ijt_local.runtime.specs import RunOptions

    generate = help_text("generate")
    assert re.search(r"--parallel N [^\[]*\[default: (\d+)\]", generate).group(1) == str(DEFAULT_PARALLEL)
    assert f"[default: {RunOptions.n_ctx}; x>=64]" in generate
    assert f"[default: {SamplingParams.temperature}]" in generate
    assert f"names from {','.join(RULE_NAMES)}" in generate
    assert "default: " + ",".join(n for n in RULE_NAMES if n in DEFAULT_RULES) in generate
    assert "chosen for this machine" not in generate
    for verb in (("generate",), ("compare",), ("eval", "ifeval"), ("eval", "ranking"), ("serve",), ("rules", "fit")):
        threads = help_text(*verb).split("--threads INTEGER")[1].split(" --")[0]
        assert f"counted again every {THREAD_CHECK_SECONDS:g} s" in threads and "all cores" not in threads, verb
    compare = help_text("compare")
    assert f"default: {DEFAULT_FORM}, {REFERENCE_FORM} with --reference-answers" in compare
    assert f"[default: {DEFAULT_FORM}]" in help_text("replicate")


def test_help_names_options_that_exist():
    """A flag an option's help names is some verb's option, not an old spelling; `--batch-invariant` is named
    only by verbs that take it."""
    every = {"--help"} | {n for _, param in options() if not param.hidden for n in param.opts + param.secondary_opts}
    for verb, command in commands():
        own = {name for param in command.params for name in getattr(param, "opts", ())}
        context = click.Context(command)
        for param in command.params:
            record = param.get_help_record(context) if isinstance(param, click.Option) else None
            text = " ".join(record) if record else ""
            for name in set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", text)):
                assert name in every and name not in OLD_SPELLINGS, f"{verb} {param.opts[0]}: names {name}"
                assert name != "--batch-invariant" or name in own, f"{verb} {param.opts[0]}: names {name}"


def test_parallel_default_is_the_decoders():
    """The CLI passes the constant runtime/batch.py decodes with when --parallel is not given."""
    from ijt_local.runtime.batch import DEFAULT_PARALLEL, default_parallel

    command = cli.get_command(None, "generate")
    parallel = next(param for param in command.params if param.name == "parallel")
    assert parallel.get_default(click.Context(command)) == DEFAULT_PARALLEL == default_parallel()
