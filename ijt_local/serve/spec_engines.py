"""Any model SPEC per request over a model `serve` has loaded (`serve --allow-specs`).

A request's `model` may then be a spec such as `default+poe:eos,uniform` or
`default+runs/poetry-lora.gguf@0.8+poe`: its MODEL must be one a served model runs (the same GGUF file),
its rules are chosen per request, and its LoRA adapters are loaded once and kept.

Requests with different adapter sets cannot share a llama.cpp decode step (adapters are set per context),
so each adapter set gets an Engine of its own over the same loaded weights: its own context, KV cache and
decode thread, made on the first request that names the set. Requests for one set are batched together
in its engine; the engines of different sets take turns on the CPU as threads do. At most `limit` such
engines stay open (least recently used first out, and only an idle one: one with requests in flight is
never closed under them; when every kept engine is busy a new set is refused with 429). A spec without
adapters runs on the served model's own engine when that model has none.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..rules.expert import RuleConfig, load_rules, parse_rule_spec, rule_spec_text
from ..runtime.specs import parse_spec
from .engine import Engine

DEFAULT_LIMIT = 2  # adapter-set engines kept open at once (each holds --parallel x --ctx KV cells)


class BusyError(Exception):
    """Every kept engine has requests in flight: no room for another adapter set now."""


class RuleSets:
    """The rule configs requests name, each loaded once and shared by every model: a session resolves a
    config against its vocabulary once per config object and keeps it."""

    def __init__(self, config_path: str | Path | None = None):
        self.config_path = config_path
        self._loaded: dict[str, RuleConfig] = {}

    def get(self, names: str | None) -> RuleConfig:
        """The config of rule names such as "eos,uniform" (`all`, or None for the default set)."""
        key = rule_spec_text(parse_rule_spec(names.lower() if names else None))
        if key not in self._loaded:
            self._loaded[key] = load_rules(spec=key, config_path=self.config_path)
        return self._loaded[key]


@dataclass
class ServedModel:
    """A model requests can name: its engine, its spec's rules, and the rule sets a request may choose."""

    name: str
    spec: str
    engine: Engine
    rules: RuleConfig | None  # the spec's (+poe) rules, None without
    rule_sets: RuleSets

    def rules_for(self, choice: str | None) -> RuleConfig | None:
        """The rules a request asks for with `ijt_rules`: None = the spec's, "off" = none, else rule names."""
        if choice is None:
            return self.rules
        if choice.strip().lower() == "off":
            return None
        return self.rule_sets.get(choice)


class SpecEngines:
    def __init__(
        self,
        bases: dict[str, tuple[object, Engine]],
        width: int,
        seq_ctx: int,
        adapter_root: Path,
        rule_sets: RuleSets,
        limit: int = DEFAULT_LIMIT,
    ):
        """`bases`: MODEL text of each served spec -> (its session, its engine if it runs no adapters)."""
        self.bases = bases
        self.width, self.seq_ctx, self.limit = width, seq_ctx, limit
        self.adapter_root = adapter_root.resolve()
        self.rule_sets = rule_sets
        self._adapters: dict[tuple[str, Path], object] = {}  # (model, adapter file) -> handle, loaded once
        self._engines: collections.OrderedDict[tuple, Engine] = collections.OrderedDict()  # LRU order
        self._lock = threading.Lock()
        self._snapshot: dict[str, Engine] = {}

    @property
    def engines(self) -> dict[str, Engine]:
        """The open adapter-set engines by model and adapter set (a snapshot: /health reads it without the
        lock)."""
        return self._snapshot

    def _changed(self) -> None:
        self._snapshot = {
            model + "".join(f"+{path.name}@{scale:g}" for path, scale in adapters): engine
            for (model, adapters), engine in self._engines.items()
        }

    def resolve(self, text: str) -> ServedModel:
        """The served model for spec `text`. UserError (one line) for a bad spec, a model not loaded
        here, or an adapter that is missing, outside the adapter folder or unreadable; BusyError."""
        spec = parse_spec(text)
        if spec.model not in self.bases:
            loaded = ", ".join(sorted(self.bases))
            raise UserError(f"{text}: model {spec.model!r} is not loaded here (loaded: {loaded})")
        session, engine = self.bases[spec.model]
        rules = self.rule_sets.get(spec.rules) if spec.poe else None
        if not spec.adapters and engine is not None:
            return ServedModel(text, text, engine, rules, self.rule_sets)
        key = (spec.model, tuple((self._adapter_path(path), scale) for path, scale in spec.adapters))
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._open(session, key)
            self._engines.move_to_end(key)
        return ServedModel(text, text, engine, rules, self.rule_sets)

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()
            self._changed()
            self._free_unused_adapters()

    def _adapter_path(self, text: str) -> Path:
        path = Path(text).expanduser()
        path = (path if path.is_absolute() else self.adapter_root / path).resolve()
        if not path.is_relative_to(self.adapter_root):
            raise UserError(f"adapter {text}: outside the adapter folder {self.adapter_root} (serve --adapter-dir)")
        if not path.is_file():
            raise UserError(f"adapter {text}: no such file under {self.adapter_root}")
        return path

    def _open(self, session, key: tuple) -> Engine:
        model, paths = key
        adapters = [(self._load(session, model, path), scale) for path, scale in paths]  # a bad file fails first
        while len(self._engines) >= self.limit:
            idle = next((k for k, e in self._engines.items() if not e.running and not e.waiting), None)
            if idle is None:
                raise BusyError(f"all {self.limit} adapter-set engines are busy (serve --spec-engines); try again")
            self._engines.pop(idle).close()
            self._changed()
            self._free_unused_adapters(keep={(model, path) for path, _ in paths})
        engine = Engine(session, self.width, self.seq_ctx, adapters=adapters)
        self._engines[key] = engine
        self._changed()
        return engine

    def _load(self, session, model: str, path: Path):
        if (model, path) not in self._adapters:
            try:
                self._adapters[model, path] = session.llama.load_adapter(path)
            except UserError as exc:
                raise UserError(f"adapter {path.name}: {str(exc).removeprefix(f'{path}: ')}") from None
        return self._adapters[model, path]

    def _free_unused_adapters(self, keep: set[tuple[str, Path]] = frozenset()) -> None:
        used = {(model, path) for model, paths in self._engines for path, _ in paths} | keep
        for model, path in [key for key in self._adapters if key not in used]:
            self.bases[model][0].llama.free_adapter(self._adapters.pop((model, path)))
