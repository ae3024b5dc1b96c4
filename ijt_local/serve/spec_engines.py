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
import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..rules.expert import RuleConfig, load_rules
from ..runtime.specs import ModelSpec, parse_spec
from .engine import Engine

DEFAULT_LIMIT = 2  # adapter-set engines kept open at once (each holds --parallel x --ctx KV cells)


class BusyError(Exception):
    """Every kept engine has requests in flight: no room for another adapter set now."""


class AdapterSession:
    """A Session seen with another LoRA adapter set: every attribute is the base session's (its model,
    tokenizer, rule experts), except the adapters a context gets."""

    def __init__(self, base, adapters: list[tuple[object, float]]):
        self._base = base
        self._adapter_set = adapters

    def __getattr__(self, name):
        return getattr(self._base, name)

    def apply_adapters(self, ctx) -> None:
        import llama_cpp

        count = len(self._adapter_set)
        handles = (llama_cpp.llama_adapter_lora_p_ctypes * max(count, 1))(*[a for a, _ in self._adapter_set])
        scales = (ctypes.c_float * max(count, 1))(*[s for _, s in self._adapter_set])
        if llama_cpp.llama_set_adapters_lora(ctx, handles, count, scales):
            raise UserError("llama.cpp could not apply the LoRA adapters to this model")


@dataclass
class SpecModel:
    """What a request's spec resolves to: the engine to queue on and the spec's rules."""

    name: str
    engine: Engine
    rules: RuleConfig | None


class SpecEngines:
    def __init__(
        self,
        bases: dict[str, tuple[object, Engine]],
        width: int,
        seq_ctx: int,
        adapter_root: Path,
        rules_config: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ):
        """`bases`: MODEL text of each served spec -> (its session, its engine if it runs no adapters)."""
        self.bases = bases
        self.width, self.seq_ctx, self.limit = width, seq_ctx, limit
        self.adapter_root = adapter_root.resolve()
        self.rules_config = rules_config
        self._rules: dict[str, RuleConfig] = {}
        self.chosen_rules: dict[str, RuleConfig] = {}  # a request's ijt_rules -> RuleConfig, shared by specs
        self._adapters: dict[Path, object] = {}  # adapter file -> llama.cpp handle, loaded once
        self._engines: collections.OrderedDict[tuple, Engine] = collections.OrderedDict()  # LRU order
        self._lock = threading.Lock()
        self._snapshot: dict[str, Engine] = {}

    @property
    def engines(self) -> dict[str, Engine]:
        """The open adapter-set engines by adapter set (a snapshot: /health reads it without the lock)."""
        return self._snapshot

    def _changed(self) -> None:
        self._snapshot = {
            "+".join(f"{path.name}@{scale:g}" for path, scale in key) or "(no adapters)": engine
            for key, engine in self._engines.items()
        }

    def resolve(self, text: str) -> SpecModel:
        """The engine and rules for spec `text`. UserError (one line) for a bad spec, a model not loaded
        here, or an adapter that is missing, outside the adapter folder or unreadable; BusyError."""
        spec = parse_spec(text)
        if spec.model not in self.bases:
            loaded = ", ".join(sorted(self.bases))
            raise UserError(f"{text}: model {spec.model!r} is not loaded here (loaded: {loaded})")
        session, engine = self.bases[spec.model]
        rules = self.rules_for(spec)
        if not spec.adapters and engine is not None:
            return SpecModel(text, engine, rules)
        key = tuple((self._adapter_path(path), scale) for path, scale in spec.adapters)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._open(session, key)
            self._engines.move_to_end(key)
        return SpecModel(text, engine, rules)

    def rules_for(self, spec: ModelSpec) -> RuleConfig | None:
        if not spec.poe:
            return None
        key = spec.rule_names()
        if key not in self._rules:
            self._rules[key] = load_rules(spec=spec.rules, config_path=self.rules_config)
        return self._rules[key]

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
        adapters = [(self._load(session, path), scale) for path, scale in key]  # a bad file fails first
        while len(self._engines) >= self.limit:
            idle = next((k for k, e in self._engines.items() if not e.running and not e.waiting), None)
            if idle is None:
                raise BusyError(f"all {self.limit} adapter-set engines are busy (serve --spec-engines); try again")
            self._engines.pop(idle).close()
            self._changed()
            self._free_unused_adapters(keep={path for path, _ in key})
        engine = Engine(AdapterSession(session, adapters), self.width, self.seq_ctx)
        self._engines[key] = engine
        self._changed()
        return engine

    def _load(self, session, path: Path):
        import llama_cpp

        from ..runtime.llama import clear_llama_log, first_llama_error

        if path not in self._adapters:
            clear_llama_log()
            handle = llama_cpp.llama_adapter_lora_init(session.llama._model.model, str(path).encode())
            if not handle:
                detail = first_llama_error()
                raise UserError(
                    f"adapter {path.name}: llama.cpp cannot load it for {session.model.name}"
                    + (f" ({detail})" if detail else "")
                )
            self._adapters[path] = handle
        return self._adapters[path]

    def _free_unused_adapters(self, keep: set[Path] = frozenset()) -> None:
        import llama_cpp

        used = {path for key in self._engines for path, _ in key} | keep
        for path in [p for p in self._adapters if p not in used]:
            llama_cpp.llama_adapter_lora_free(self._adapters.pop(path))
