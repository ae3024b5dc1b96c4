"""Model SPECs: a model plus optional LoRA adapters and the rule expert. One grammar for `serve`, `compare`,
`eval` and `rules fit`.

    SPEC     := MODEL ("+" ADAPTER)* ["+poe" [":" RULES]]
    MODEL    := anything `--model` takes: default | smollm2-135m-instruct | path.gguf | owner/repo:file.gguf
    ADAPTER  := path/to/adapter.gguf ["@" SCALE]        (scale defaults to 1.0)
    RULES    := comma-separated rule names (eos,uniform,diversity,start) or `all`; when omitted, the
                paper's three (eos,uniform,diversity: rules.DEFAULT_RULES)

Examples: `default`, `default+poe`, `default+poe:eos,uniform`, `tuned.gguf`, `base.gguf+adapter.gguf@0.5`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..models import ResolvedModel, resolve_model
from ..rules.expert import DEFAULT_RULES, RULE_NAMES, RuleConfig, load_rules, parse_rule_spec, rule_spec_text

if TYPE_CHECKING:
    from .session import Session

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ADAPTER = re.compile(r"^(?P<path>.+\.gguf)(?:@(?P<scale>[-+]?\d+(?:\.\d*)?|[-+]?\.\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelSpec:
    text: str
    model: str
    adapters: tuple[tuple[str, float], ...] = ()
    poe: bool = False
    rules: str | None = None  # the rule option string, None = the default set (rules.DEFAULT_RULES)

    def describe(self) -> dict:
        return {
            "spec": self.text,
            "model": self.model,
            "adapters": [{"path": p, "scale": s} for p, s in self.adapters],
            "poe": self.poe,
            "rules": self.rule_names(),
        }

    def rule_names(self) -> str | None:
        """The rules this spec turns on, spelled out (`eos,uniform,diversity`); None without `+poe`. Caches and
        result files record this, not the spec's text: `+poe` alone has meant another set before."""
        return rule_spec_text(parse_rule_spec(self.rules)) if self.poe else None


def parse_spec(text: str) -> ModelSpec:
    """Parse a SPEC string (syntax only; files are checked when the spec is opened)."""
    text = text.strip()
    if not text:
        raise UserError("empty model spec")
    body, poe, rules = text, False, None
    match = re.search(r"\+poe(?::(?P<rules>[^+]*))?$", body)
    if match:
        body, poe = body[: match.start()], True
        rules = match.group("rules")
        if rules is not None:
            if not rules.strip():
                raise UserError(f"{text}: `+poe:` needs rule names ({', '.join(RULE_NAMES)}, or all)")
            parse_rule_spec(rules)  # unknown rule names fail here, before any model loads
    if not body:
        raise UserError(f"{text}: no model before `+poe`")
    # A local file whose name contains '+' is one model, not model+adapter.
    if Path(body).expanduser().is_file():
        return ModelSpec(text, body, (), poe, rules)
    model, *adapter_parts = body.split("+")
    if not model:
        raise UserError(f"{text}: no model before `+`")
    adapters = []
    for part in adapter_parts:
        adapter = parse_adapter(part)
        if adapter is None:
            raise UserError(f"{text}: unknown suffix `+{part}` (expected `+adapter.gguf[@scale]` or `+poe[:rules]`)")
        adapters.append(adapter)
    return ModelSpec(text, model, tuple(adapters), poe, rules)


def parse_adapter(text: str) -> tuple[str, float] | None:
    """`path/to/adapter.gguf[@scale]` as (path, scale); None when `text` is not of that form."""
    found = _ADAPTER.match(text.strip())
    if not found:
        return None
    scale = found.group("scale")
    return found.group("path"), float(scale) if scale is not None else 1.0


@dataclass(frozen=True)
class RunOptions:
    """How a SPEC is opened: the one options object every verb fills from its flags."""

    n_ctx: int = 4096
    threads: int | None = None  # None: the cores other processes leave free (runtime.session.default_threads)
    gpu_layers: int | None = None  # None: all layers on a GPU build, else none
    template: str | None = None  # chat template name; None: the model's
    rules_config: str | Path | None = None  # TOML overriding rule words, weights and ramps (of rules that run)
    paper_exact: bool | None = None  # the paper's EOS bonus that drops to 0 after 250 tokens
    poe: bool = False  # the rule expert even when the spec has no `+poe` (--poe)
    rules: str | None = None  # rule names (--rules); must agree with the spec's `+poe:RULES`
    adapters: tuple[tuple[str, float], ...] = ()  # LoRA adapters on top of the spec's (--adapter)


@dataclass(frozen=True)
class ResolvedSpec:
    """What a SPEC will run, with every file found and the rules loaded, but no model loaded yet."""

    spec: ModelSpec
    model: ResolvedModel
    adapters: tuple[tuple[Path, float], ...]
    rules: RuleConfig | None
    name: str  # the generator name result files record: model+adapter.gguf+poe[:rules]
    options: RunOptions


@dataclass
class LoadedModel:
    """A SPEC opened: its llama.cpp session and its rules (None without the rule expert)."""

    session: Session
    rules: RuleConfig | None
    name: str
    spec: ModelSpec
    options: RunOptions

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_spec(spec: str | ModelSpec, options: RunOptions = RunOptions()) -> ResolvedSpec:
    """Find the model and adapters of `spec` and load its rules: a missing file or a bad rule fails here,
    before any model loads."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    rule_names = options.rules
    if spec.rules is not None:
        if rule_names is not None and parse_rule_spec(rule_names) != parse_rule_spec(spec.rules):
            raise UserError(f"--model {spec.text} and --rules {rule_names} name different rules; give them once")
        rule_names = spec.rules
    rules = None
    if options.poe or spec.poe or rule_names:
        rules = load_rules(rule_names, options.rules_config, options.paper_exact)
    model = resolve_model(spec.model)
    adapters = []
    for path, scale in (*spec.adapters, *options.adapters):
        found = Path(path).expanduser()
        if not found.is_file():
            raise UserError(f"adapter {path}: no such file")
        adapters.append((found, scale))
    name = spec.model + "".join(f"+{path.name}" for path, _ in adapters)
    if rules is not None:
        name += "+poe" + ("" if rules.enabled == DEFAULT_RULES else ":" + rule_spec_text(rules.enabled))
    return ResolvedSpec(spec, model, tuple(adapters), rules, name, options)


def open_spec(spec: str | ModelSpec | ResolvedSpec, options: RunOptions = RunOptions()) -> LoadedModel:
    """The one road from a SPEC to a ready session: resolve it (unless given resolved), then load it."""
    from .session import Session

    resolved = spec if isinstance(spec, ResolvedSpec) else resolve_spec(spec, options)
    options = resolved.options
    session = Session(
        resolved.model,
        n_ctx=options.n_ctx,
        threads=options.threads,
        gpu_layers=options.gpu_layers,
        adapters=resolved.adapters,
        template=options.template,
    )
    return LoadedModel(session, resolved.rules, resolved.name, resolved.spec, options)


def parse_named_specs(options: list[str], bare: bool = False) -> list[tuple[str, ModelSpec]]:
    """`--model NAME=SPEC` options -> [(name, spec)], names unique and safe as file names. With `bare`, an
    option without a NAME= prefix is named after itself (`serve --model default+poe`)."""
    if not options:
        raise UserError("give at least one --model NAME=SPEC")
    named = []
    for option in options:
        name, sep, text = option.partition("=")
        if bare and not (sep and _NAME.match(name)):
            name, text = option, option
        elif not sep:
            raise UserError(f"--model {option}: expected NAME=SPEC (for example base=default)")
        elif not _NAME.match(name):
            raise UserError(f"--model {option}: name {name!r} must be letters, digits, '.', '_' or '-'")
        if any(name == other for other, _ in named):
            raise UserError(f"--model {option}: name {name!r} given twice")
        named.append((name, parse_spec(text)))
    return named
