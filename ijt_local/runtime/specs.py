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

from ..errors import UserError
from ..rules.expert import RULE_NAMES, parse_rule_spec, rule_spec_text

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


def check_spec(spec: ModelSpec) -> None:
    """Fail early (before any generation) on a model or adapter that cannot be found."""
    from ..models import resolve_model

    resolve_model(spec.model)
    for path, _ in spec.adapters:
        if not Path(path).expanduser().is_file():
            raise UserError(f"{spec.text}: adapter {path}: no such file")


def open_spec(
    spec: ModelSpec,
    n_ctx: int = 4096,
    threads: int | None = None,
    gpu_layers: int | None = None,
    rules_config: str | Path | None = None,
):
    """Load a spec: (Session, RuleConfig or None)."""
    from ..models import resolve_model
    from ..rules.expert import load_rules
    from .session import Session

    check_spec(spec)
    rules = load_rules(spec=spec.rules, config_path=rules_config) if spec.poe else None
    session = Session(
        resolve_model(spec.model),
        n_ctx=n_ctx,
        threads=threads,
        gpu_layers=gpu_layers,
        adapters=[(Path(p).expanduser(), s) for p, s in spec.adapters],
    )
    return session, rules


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
