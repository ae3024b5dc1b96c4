"""The models a replication trains, evaluates and judges, and their names: `NAME-sSEED` for a tuned
model (one per training set and seed), plain names for the untrained base and the rule models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .budgets import Budget

# The paper's rules run (`eos-uniform-diversity`) and its three ablations, each without one of the three;
# then `rules-start`, ours: the same with the `start` rule on. Spelled out, so a cache made under another
# default set is refused, not reused.
RULE_MODELS = {
    "rules": "default+poe:eos,uniform,diversity",
    "rules-no-eos": "default+poe:uniform,diversity",
    "rules-no-uniform": "default+poe:eos,diversity",
    "rules-no-diversity": "default+poe:eos,uniform",
    "rules-start": "default+poe:eos,uniform,diversity,start",
}
ABLATIONS = ("rules-no-eos", "rules-no-uniform", "rules-no-diversity")  # the paper's: the rules, each without one
EXTRA_RULES = ("rules-start",)  # not the paper's


def reference(seed: int) -> str:
    """The instruction-tuned model seed `seed`'s win rates are against (the paper pairs seeds the same way)."""
    return f"instruct-s{seed}"


def table_row(name: str) -> str:
    """The report row a model belongs to: its name without the seed ('poetry-s1' -> 'poetry')."""
    stem, _, seed = name.rpartition("-s")
    return stem if stem and seed.isdigit() else name


@dataclass(frozen=True)
class Lineup:
    base: str  # --base: `default`, a GGUF, or a Hugging Face folder or repo id
    budget: Budget
    seeds: int
    out: Path

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def training_sets(self) -> dict[str, Path]:
        sets = {"instruct": "lima-instruction", "response": "lima-response"}
        sets.update({task: task for task in self.budget.single_tasks})
        return {name: self.out / "data" / f"{stem}.jsonl" for name, stem in sets.items()}

    def tuned(self) -> list[str]:
        """Every adapter: a training set and a seed."""
        return [f"{name}-s{seed}" for name in self.training_sets() for seed in self.seed_list]

    @property
    def runtime_base(self) -> str:
        """The GGUF the runtime loads: --base itself when it is one, else --base (a Hugging Face folder or
        repo id) converted to f16 by the convert stage."""
        from ..train.base import is_gguf_base

        if is_gguf_base(self.base):
            return self.base
        return str(self.out / "gguf" / "base-f16.gguf")

    def model_specs(self) -> dict[str, str]:
        base = self.runtime_base
        specs = {"base": base}
        for name in self.tuned():
            specs[name] = f"{base}+{self.out / 'gguf' / f'{name}.gguf'}"
        for name, spec in RULE_MODELS.items():
            specs[name] = spec.replace("default", base, 1)
        return specs

    def rule_sets(self) -> dict[str, str]:
        """Each rule row's rules, spelled out (`rules` -> `eos,uniform,diversity`), for results.json."""
        from ..runtime.specs import parse_spec

        return {name: parse_spec(spec).rule_names() for name, spec in RULE_MODELS.items()}

    def judged_pairs(self) -> dict[str, list[str]]:
        """Per reference (instruct-sK): the models judged against it. As in the paper, a tuned model of seed
        K against the instruction-tuned model of seed K, and the untrained models (base, the rules and
        their ablations) against every seed's, so every row has a spread over seeds."""
        tuned = [name for name in self.training_sets() if name != "instruct"]
        return {
            reference(seed): ["base", "rules", *(f"{name}-s{seed}" for name in tuned), *ABLATIONS, *EXTRA_RULES]
            for seed in self.seed_list
        }

    def style_models(self) -> list[str]:
        """Base and the single-task models: whose style adherence the paper's single-task finding is about."""
        return [
            name for name in self.model_specs() if name == "base" or name.rsplit("-s", 1)[0] in self.budget.single_tasks
        ]
