"""`ijt-local rules fit`: search the rule expert's numbers for one base model.

The paper hand-tuned its rules for Llama-2-7B. This searches five numbers of the rule config with Optuna's
TPE sampler (a maintained Bayesian optimiser: each trial costs minutes of decoding, so a model of which
settings did well spends the budget better than a grid over five dimensions):

    eos.max_bonus, eos.ramp_tokens      how strongly and how soon the EOS bonus grows
    uniform scale                       one factor on every uniform word weight
    diversity.penalty                   the per-token penalty for tokens already seen
    start.scale                         the first token's class score (only when `start` is among the rules)

The rules searched are the paper's three (eos, uniform, diversity) unless `--rules` names others; the
fitted TOML records them, so `--rules-config` turns on the same set.

A trial decodes the 56-style behaviour set with the candidate rules and rejects the configuration if it
breaks the behaviour constraints (stop rate, role-tag leaks, echo; Optuna's constrained TPE learns where
those fail); it then scores the objective on the dev split (IFEval loose prompt-level accuracy, or
ranking accuracy on LIMA pairs). The paper's defaults are the first trial. At the end the best feasible
configuration and the defaults are scored on the test split, which the search never saw, and written as
a TOML that `--rules-config` loads. Trials are kept in `OUT.trials.db` (SQLite): a rerun continues.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..eval.metrics import behaviour_metrics
from ..rules.expert import RuleConfig, load_rules, parse_rule_spec, rule_spec_text

PARAMETERS = ("eos_max_bonus", "eos_ramp_tokens", "uniform_scale", "diversity_penalty", "start_scale")


@dataclass
class FitData:
    """Instructions for the constraints, and the objective's dev and test splits (disjoint)."""

    behaviour: list[str]
    dev: list
    test: list
    objective: str


@dataclass(frozen=True)
class Constraints:
    min_stop: float = 0.95
    max_leak: float = 0.15
    max_echo: float = 0.05

    def violations(self, metrics: dict) -> list[float]:
        """Optuna's convention: each value <= 0 when that constraint holds."""
        return [
            self.min_stop - metrics["stop_rate"],
            metrics["role_leak_rate"] - self.max_leak,
            metrics["echo_rate"] - self.max_echo,
        ]


def searched(rule_names: str | None) -> tuple[str, ...]:
    """The PARAMETERS a search over `rule_names` moves: start.scale only when the start rule is on."""
    return tuple(p for p in PARAMETERS if p != "start_scale" or "start" in parse_rule_spec(rule_names))


def default_params(rule_names: str | None) -> dict:
    settings = load_rules().settings
    params = {
        "eos_max_bonus": float(settings["eos"]["max_bonus"]),
        "eos_ramp_tokens": int(settings["eos"]["ramp_tokens"]),
        "uniform_scale": 1.0,
        "diversity_penalty": float(settings["diversity"]["penalty"]),
        "start_scale": float(settings["start"]["scale"]),
    }
    return {name: params[name] for name in searched(rule_names)}


def overrides(params: dict, rule_names: str) -> dict:
    """The rule-config TOML these numbers give: the rule set and the tables they change (everything else
    keeps its default)."""
    words = load_rules().settings["uniform"]["words"]
    tables = {
        "rules": rule_names.split(","),
        "eos": {"max_bonus": round(params["eos_max_bonus"], 4), "ramp_tokens": int(params["eos_ramp_tokens"])},
        "uniform": {"words": {word: round(weight * params["uniform_scale"], 4) for word, weight in words.items()}},
        "diversity": {"penalty": round(params["diversity_penalty"], 4)},
    }
    if "start_scale" in params:
        tables["start"] = {"scale": round(params["start_scale"], 4)}
    return tables


def write_config(path: Path, params: dict, rule_names: str, header: list[str]) -> None:
    import tomli_w

    from ..jsonl import write_atomic

    comment = "".join(f"# {line}\n" if line else "#\n" for line in header)
    write_atomic(path, comment + "\n" + tomli_w.dumps(overrides(params, rule_names)))


def config_for(params: dict, rule_names: str, scratch: Path) -> RuleConfig:
    """The RuleConfig these numbers give, through the same TOML path `--rules-config` reads."""
    write_config(scratch, params, rule_names, [])
    return load_rules(config_path=scratch)


class Scorer:
    """Decodes with one session; scores a rule configuration on behaviour, dev or test."""

    def __init__(self, session, data: FitData, max_tokens: int):
        self.session, self.data, self.max_tokens = session, data, max_tokens

    def behaviour(self, rules: RuleConfig | None) -> dict:
        from ..runtime.batch import generate_all

        conversations = [[{"role": "user", "content": text}] for text in self.data.behaviour]
        rows = [None] * len(conversations)
        for index, generation in generate_all(
            self.session, conversations, rules=rules, max_tokens=self.max_tokens, stop_at_role_tags=False
        ):  # leaks are measured, as in compare
            rows[index] = {
                "instruction": self.data.behaviour[index],
                "output": generation.text,
                "finish_reason": generation.finish_reason,
                "n_tokens": generation.n_tokens,
            }
        return behaviour_metrics(rows)

    def objective(self, rules: RuleConfig | None, split: str) -> float:
        return self.scores(rules, split)["score"]

    def scores(self, rules: RuleConfig | None, split: str) -> dict:
        """{"score": the objective} on a split; for IFEval also the score with echoes counted as failures."""
        rows = self.data.dev if split == "dev" else self.data.test
        if self.data.objective == "ifeval":
            return self._ifeval(rules, rows)
        return {"score": self._ranking(rules, rows)}

    def _ifeval(self, rules, rows) -> dict:
        from ..eval.ifeval.run import accuracy, score_response
        from ..runtime.batch import generate_all

        conversations = [[{"role": "user", "content": row["prompt"]}] for row in rows]
        replies = dict(generate_all(self.session, conversations, rules=rules, max_tokens=self.max_tokens))
        result = accuracy([score_response(row, replies[i].text) for i, row in enumerate(rows)])
        return {
            "score": result["prompt_level_loose"],
            "no_echo": result["prompt_level_loose_no_echo"],
            "echo_rate": result["echo_rate"],
        }

    def _ranking(self, rules, rows) -> float:
        """The share of (real, random) pairs ranked correctly, as `eval ranking` counts it."""
        from ..eval.ranking import ranking_accuracy

        scored = []
        for prompt, own, others in rows:
            mine, *theirs = self.session.score_responses(prompt.messages, [own, *others], rules)
            scored.append(
                {
                    "own": mine.mean_logprob,
                    "other_ids": [None] * len(theirs),
                    "others": [t.mean_logprob for t in theirs],
                }
            )
        return ranking_accuracy(scored)["ranking_accuracy"]


def objective_data(objective: str, ifeval_path: Path | None, ranking_path: Path | None) -> Path | None:
    """The file the objective scores on; one line when it is missing (checked before any model loads)."""
    if objective == "ifeval":
        from ..eval.ifeval.run import default_data_path

        path = ifeval_path or default_data_path()
        if not Path(path).is_file():
            raise UserError(f"--objective ifeval needs the IFEval prompts: {path}: no such file (--ifeval-data)")
        return Path(path)
    if objective == "ranking":
        if ranking_path is None or not Path(ranking_path).is_file():
            raise UserError(
                "--objective ranking needs --ranking-data: a JSONL of instruction-response pairs "
                "(messages with an assistant turn, or instruction/output), e.g. held-out LIMA rows"
            )
        return Path(ranking_path)
    return None


def load_fit_data(
    objective: str,
    behaviour_path: Path,
    behaviour_size: int,
    dev_size: int,
    ifeval_path: Path | None,
    ranking_path: Path | None,
    max_tokens: int,
    session,
    test_size: int | None = None,
) -> FitData:
    """Even rows of the objective's file are dev, odd rows test: fixed halves, never the same prompts.
    The first `dev_size` even rows are searched on; the first `test_size` odd rows (None: all of them)
    report. A small dev split keeps trials quick; a large test split keeps the final comparison honest."""
    from ..eval.prompt_sets import load_prompts

    behaviour = [p.instruction for p in load_prompts(behaviour_path)][:behaviour_size]
    path = objective_data(objective, ifeval_path, ranking_path)
    if objective == "ifeval":
        from ..eval.ifeval.run import load_ifeval

        rows = load_ifeval(path)
        return FitData(behaviour, rows[0::2][:dev_size], rows[1::2][:test_size], objective)
    if objective == "ranking":
        from ..eval.ranking import DEFAULT_OTHERS, cut_to_tokens, pick_others

        prompts = load_prompts(ranking_path)
        if any(not (p.reference or "").strip() for p in prompts) or len(prompts) < 4:
            raise UserError(f"{ranking_path}: ranking needs at least 4 rows, each with a response")
        others = pick_others(len(prompts), 0, min(DEFAULT_OTHERS, len(prompts) - 1))
        pairs = [
            (
                p,
                cut_to_tokens(session, p.reference, max_tokens),
                [cut_to_tokens(session, prompts[j].reference, max_tokens) for j in others[i]],
            )
            for i, p in enumerate(prompts)
        ]
        return FitData(behaviour, pairs[0::2][:dev_size], pairs[1::2][:test_size], objective)
    raise UserError(f"--objective {objective}: choose ifeval or ranking")


def search_seconds(study) -> float:
    """Decoding time of every finished trial, over all the runs that continued this search."""
    return sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in study.trials
        if t.state.is_finished() and t.datetime_start and t.datetime_complete
    )


def check_vocabulary(session) -> None:
    expert = session.rule_expert(load_rules())
    words = load_rules().settings["uniform"]["words"]
    if len([w for w in words if w in expert.unresolved]) > len(words) / 2:
        raise UserError(
            f"the model's vocabulary spells only {len(words) - len(expert.unresolved & set(words))} of "
            f"the {len(words)} uniform rule words as single tokens; fitting their weights would mean "
            "little (unresolved: " + ", ".join(sorted(expert.unresolved)[:8]) + ")"
        )


@dataclass(frozen=True)
class FitSettings:
    """What `rules fit` searches and how long: the rules whose numbers it tunes, the budget (trials and/or
    minutes), the sampler's seed, the reply length and the behaviour constraints."""

    rule_names: str | None = None  # None: the default set
    trials: int | None = None
    minutes: float | None = None
    seed: int = 0
    max_tokens: int = 256
    constraints: Constraints = Constraints()


def fit(session, data: FitData, settings: FitSettings, out: Path, model_name: str, log) -> dict:
    """Search the rule numbers on the dev split (resuming the study stored beside `out`), then score the
    fitted rules, the paper's and none on the test split; writes the fitted TOML to `out`."""
    try:
        import optuna
        import tomli_w  # noqa: F401  (write_config needs it; fail before the search, not after)
    except ImportError as exc:
        raise UserError(f"rules fit needs {exc.name}: pip install 'ijt-local[fit]'") from None

    if not settings.trials and not settings.minutes:
        raise UserError("give a budget: --trials N or --minutes M (at least one, above zero)")
    check_vocabulary(session)
    rule_names = rule_spec_text(parse_rule_spec(settings.rule_names))  # None: the default set, spelled out
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scorer = Scorer(session, data, settings.max_tokens)
    scratch = out.with_name(f".{out.name}.trial.toml")
    study = optuna.create_study(
        study_name="rules-fit",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),  # constrained: trials report set_constraint
        storage=f"sqlite:///{out.with_name(out.name + '.trials.db')}",
        load_if_exists=True,
    )
    if not study.trials:
        study.enqueue_trial(default_params(rule_names))
    done = len([t for t in study.trials if t.state.is_finished()])
    remaining = None if not settings.trials else max(settings.trials - done, 0)
    if remaining != 0:
        objective = trial_objective(session, scorer, data, settings.constraints, rule_names, scratch, log)
        study.optimize(objective, n_trials=remaining, timeout=settings.minutes * 60 if settings.minutes else None)
    scratch.unlink(missing_ok=True)
    best = best_feasible(study)
    fitted = {name: best.params[name] for name in searched(rule_names)}
    log("scoring the fitted rules, the paper's and none on the test split")
    paper_rules = load_rules(rule_names)
    defaults_dev = scorer.objective(paper_rules, "dev")  # its trial skipped dev if it broke the constraints
    test_scores = {
        "fitted": scorer.scores(config_for(fitted, rule_names, scratch), "test"),
        "paper defaults": scorer.scores(paper_rules, "test"),
        "base model (no rules)": scorer.scores(None, "test"),
    }
    scratch.unlink(missing_ok=True)
    result = {
        "model": model_name,
        "rules": rule_names,
        "objective": data.objective,
        "trials": len(study.trials),
        "search_minutes": round(search_seconds(study) / 60, 1),
        "params": fitted,
        "dev": {"fitted": best.value, "paper defaults": defaults_dev},
        "paper_defaults_behaviour": study.trials[0].user_attrs.get("behaviour"),
        "test": {name: scores["score"] for name, scores in test_scores.items()},
        "behaviour": best.user_attrs["behaviour"],
        "test_details": test_scores,
        "splits": {"dev": len(data.dev), "test": len(data.test), "behaviour": len(data.behaviour)},
        "constraints": vars(settings.constraints),
    }
    write_config(out, fitted, rule_names, config_header(result, settings, model_name))
    return result


def trial_objective(session, scorer: Scorer, data: FitData, constraints: Constraints, rule_names: str, scratch, log):
    """Optuna's objective: one trial's rule numbers scored on the dev split when their replies keep the
    behaviour constraints (0 when they break them; the constraints are reported to the sampler)."""

    def objective(trial) -> float:
        params = {
            "eos_max_bonus": trial.suggest_float("eos_max_bonus", 2.0, 40.0),
            "eos_ramp_tokens": trial.suggest_int("eos_ramp_tokens", 50, 600),
            "uniform_scale": trial.suggest_float("uniform_scale", 0.0, 2.0),
            "diversity_penalty": trial.suggest_float("diversity_penalty", -4.0, 0.0),
        }
        if "start_scale" in searched(rule_names):
            params["start_scale"] = trial.suggest_float("start_scale", 0.0, 10.0)
        rules = config_for(params, rule_names, scratch)
        metrics = scorer.behaviour(rules)
        violations = constraints.violations(metrics)
        trial.set_user_attr("violations", violations)
        for name, value in zip(("stop", "leak", "echo"), violations):
            trial.set_constraint(name, value)
        trial.set_user_attr("behaviour", metrics)
        score = scorer.objective(rules, "dev") if max(violations) <= 0 else 0.0
        session.forget_rules(rules)  # one resolved expert (a few MB) per trial would pile up
        log(
            f"trial {trial.number}: dev {data.objective} {score:.3f}, stop {metrics['stop_rate']:.2f} leak "
            f"{metrics['role_leak_rate']:.2f} echo {metrics['echo_rate']:.2f}"
            + ("" if max(violations) <= 0 else " (breaks the constraints)")
        )
        return score

    return objective


def best_feasible(study):
    """The best finished trial that keeps the constraints (the earliest of equal ones)."""
    finished = [t for t in study.trials if t.state.is_finished()]
    feasible = [t for t in finished if max(t.user_attrs["violations"]) <= 0]
    if not feasible:
        closest = min(finished, key=lambda t: max(t.user_attrs["violations"]))
        raise UserError(
            f"no configuration of {len(study.trials)} tried meets the constraints; the closest: "
            f"{closest.user_attrs['behaviour']} (relax --min-stop/--max-leak/--max-echo or search longer)"
        )
    return max(feasible, key=lambda t: (t.value, -t.number))


def config_header(result: dict, settings: FitSettings, model_name: str) -> list[str]:
    """The fitted TOML's comment lines: how it was fitted and what it scored."""
    constraints, splits, test = settings.constraints, result["splits"], result["test"]
    lines = [
        f"Rule expert fitted to {model_name} by `ijt-local rules fit` (load with --rules-config).",
        f"objective: {result['objective']}, {splits['dev']} dev / {splits['test']} test "
        f"items (even / odd rows); constraints on {splits['behaviour']} instructions: stop >= "
        f"{constraints.min_stop}, role leak <= {constraints.max_leak}, echo <= {constraints.max_echo}",
        f"{result['trials']} trials (TPE, seed {settings.seed}); dev: fitted {result['dev']['fitted']:.3f}, "
        f"paper defaults {result['dev']['paper defaults']:.3f}",
        "test: " + ", ".join(f"{k} {v:.3f}" for k, v in test.items()),
    ]
    if result["objective"] == "ifeval":
        lines.append(
            "test, echoes of the prompt counted as failures: "
            + ", ".join(f"{k} {v['no_echo']:.3f}" for k, v in result["test_details"].items())
        )
    lines.append("behaviour of the fitted rules: " + ", ".join(f"{k} {v:.3f}" for k, v in result["behaviour"].items()))
    lines.append("numbers: " + ", ".join(f"{k} {v:.4g}" for k, v in result["params"].items()))
    return lines
