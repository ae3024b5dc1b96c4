"""Laptop-scale replication of the paper's three findings, in one command.

    python scripts/replicate.py --base default --budget smoke --out runs/smoke
    python scripts/replicate.py --base default --budget laptop --out runs/laptop --seeds 2 \
        [--judge judge | --judge-url http://127.0.0.1:8000/v1 --judge-model NAME]

Stages (each finished stage is recorded in OUT/stages/ and never redone; an interrupted stage resumes,
since every verb it calls resumes on its own, and its time so far is kept in OUT/stages/NAME.partial.json).
OUT belongs to one --base, --budget and data (the files' content, wherever --data-root puts them); a
rerun with more --seeds or a judge runs the stages those change again, and they do only the work that is
missing:
  data      LIMA (instruction and response-only variants) and the single-task sets, from local files
  train     LoRA adapters: instruction-tuned, response-tuned, each single task, per seed
  convert   each adapter to a GGUF LoRA adapter over the one quantized base (see ADAPTER_ROUTE)
  evaluate  compare on held-out instructions (behaviour metrics), IFEval, ranking
  winrate   with --judge or --judge-url: each model's replies judged against those of the instruction-
            tuned model of the same seed (instruct-sK; the untrained base and rule models against every
            seed's), both orders, raw and length-controlled win rates
  report    OUT/results.md and OUT/results.json: a row per model, the paper's numbers beside
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ijt_local.errors import UserError
from ijt_local.eval.judge_prompts import DEFAULT_FORM, PROMPT_FORMS
from ijt_local.jsonl import read_jsonl, write_atomic
from ijt_local.models import file_sha256
from ijt_local.shared_data import shared_data_path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = shared_data_path()
CLOCK_TICK = 30.0  # seconds between saves of a running stage's time

# Why adapters and not merged models: every tuned model then runs on the same Q4_K_M base file, so
# differences between rows come from the adapters alone, not from re-quantizing each merged model; an
# export takes seconds and a few MB instead of a merge + f16 write + quantize of 250 MB per model.
ADAPTER_ROUTE = "GGUF LoRA adapters over the shared Q4_K_M base (ijt-local export-adapter)"

# AlpacaEval win rates against the same base instruction-tuned on LIMA, Llama-2-7B (paper, Table 1/§6).
PAPER_WIN_RATES = {"response": 43.3, "poetry": 23.7, "rules": 24.4}

ALPACA_SEED = 0  # draws the AlpacaEval sample and the style probe


def reference(seed: int) -> str:
    """The instruction-tuned model seed `seed`'s win rates are against (the paper pairs seeds the same way)."""
    return f"instruct-s{seed}"


RULE_ABLATIONS = {
    "rules": "default+poe",
    "rules-no-eos": "default+poe:uniform,diversity,start",
    "rules-no-uniform": "default+poe:eos,diversity,start",
    "rules-no-diversity": "default+poe:eos,uniform,start",
}
ABLATIONS = tuple(name for name in RULE_ABLATIONS if name != "rules")  # the rules, each without one rule


@dataclass(frozen=True)
class Budget:
    train_examples: int
    single_tasks: tuple[str, ...]
    epochs: float
    max_steps: int  # -1: run the epochs
    max_seq_len: int
    batch_size: int
    grad_accum: int
    eval_prompts: int | None  # held-out val instructions (None = all 56)
    max_tokens: int
    ifeval_prompts: int
    ranking_pairs: int
    alpaca_prompts: int  # seeded uniform sample of the 805 AlpacaEval instructions, for win rates
    style_per_domain: int  # further AlpacaEval instructions per domain, for style adherence
    lr: float | None = None  # None: ijt-local train's default

    def training(self) -> dict:
        """The fields trained adapters depend on: a run folder holds adapters of one such setting."""
        keys = ["train_examples", "single_tasks", "epochs", "max_steps", "max_seq_len", "batch_size", "grad_accum"]
        return {key: getattr(self, key) for key in keys + (["lr"] if self.lr is not None else [])}

    def evaluation(self) -> dict:
        return {key: value for key, value in dataclasses.asdict(self).items() if key not in self.training()}


BUDGETS = {
    # proves the whole chain end to end in well under 15 minutes on 2 cores
    "smoke": Budget(train_examples=16, single_tasks=("poetry",), epochs=1, max_steps=4, max_seq_len=128,
                    batch_size=4, grad_accum=1, eval_prompts=4, max_tokens=96, ifeval_prompts=4,
                    ranking_pairs=8, alpaca_prompts=4, style_per_domain=1),
    # the real experiment, sized for about two hours on 2 CPU cores with one seed
    "laptop": Budget(train_examples=128, single_tasks=("poetry", "gsm8k"), epochs=2, max_steps=-1,
                     max_seq_len=384, batch_size=4, grad_accum=2, eval_prompts=None, max_tokens=384,
                     ifeval_prompts=60, ranking_pairs=60, alpaca_prompts=100, style_per_domain=12),
    # the paper's settings (john-hewitt/implicit-ins finetune.sh: LIMA, 2,048 tokens, 128 rows per step,
    # 20 epochs, lr 2e-5 linear) for a GPU machine; LoRA where the paper tuned all weights. Every single
    # task the paper trained; all 805 AlpacaEval instructions, so no style probe is left over. 8 rows a
    # micro-step split evenly over 1, 2, 4 or 8 processes (--train-processes).
    "paper": Budget(train_examples=1000, single_tasks=("poetry", "recipes", "chess", "mbpp", "gsm8k"), epochs=20,
                    max_steps=-1, max_seq_len=2048, batch_size=8, grad_accum=16, lr=2e-5, eval_prompts=None,
                    max_tokens=2048, ifeval_prompts=541, ranking_pairs=30, alpaca_prompts=805, style_per_domain=0),
}


class StageClock:
    """Seconds spent on one stage over every invocation that worked on it.

    The running total is saved to `path` every CLOCK_TICK seconds and when the stage is interrupted,
    so a resumed stage reports its whole cost; the file is removed once the stage finishes. A finished
    stage rerun for new arguments starts from its `finished_before` seconds.
    """

    def __init__(self, path: Path, finished_before: float = 0.0):
        self.path = path
        # a partial total already counts `finished_before`: it was saved by a rerun of the finished stage
        self.earlier = json.loads(path.read_text())["seconds"] if path.exists() else finished_before

    def seconds(self) -> float:
        return round(self.earlier + time.perf_counter() - self.began, 1)

    def save(self) -> None:
        write_atomic(self.path, json.dumps({"seconds": self.seconds()}))

    def _tick(self) -> None:
        while not self.stopped.wait(CLOCK_TICK):
            self.save()

    def __enter__(self) -> "StageClock":
        self.began = time.perf_counter()
        self.stopped = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)
        self.ticker.start()
        return self

    def __exit__(self, error_type, *_) -> None:
        self.stopped.set()
        self.ticker.join()
        if error_type is None:
            self.path.unlink(missing_ok=True)
        else:
            self.save()


class Replication:
    def __init__(self, args, out: str | None = None):
        self.args = args
        self.budget = BUDGETS[args.budget]
        self.out = Path(out or args.out).resolve()
        self.data_root = Path(args.data_root).resolve()
        self.stages = self.out / "stages"
        self.claim_out_dir()
        self.started = time.perf_counter()

    # ---- bookkeeping -----------------------------------------------------------------------------

    def claim_out_dir(self) -> None:
        """OUT holds one base, budget and data: data, adapters and caches of another would be stale. The data
        is known by its content, so a run (or its archive) resumes with the same files in another folder."""
        identity = {"base": self.args.base, "budget": self.args.budget, "data": self.data_fingerprint(),
                    "training": self.budget.training()}
        identity = json.loads(json.dumps(identity))  # as JSON holds it: tuples are lists
        path = self.out / "replication.json"
        if path.exists():
            recorded = json.loads(path.read_text())
            # made before these were recorded (the data folder was known by its path then): from now on they are
            missing = {"training": identity["training"]}
            if recorded.get("data_root") == str(self.data_root):
                missing["data"] = identity["data"]
            missing = {key: value for key, value in missing.items() if key not in recorded}
            if missing:
                recorded.update(missing)
                write_atomic(path, json.dumps(recorded, indent=1))
            changed = differences(recorded, identity)
            if "budget" in changed:
                changed.pop("training", None)  # another budget trains otherwise anyway
            if changed:
                made_with = ", ".join(self.made_with(key, old, recorded) for key, (old, _) in changed.items())
                raise SystemExit(f"replicate: {self.out} holds a run made with {made_with}; pass the same to "
                                 f"resume it, or use another --out")
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps({**identity, "data_root": str(self.data_root)}, indent=1))
        self.stages.mkdir(exist_ok=True)

    @staticmethod
    def made_with(key: str, old, recorded: dict) -> str:
        if key == "training":
            return f"other training settings of budget {recorded['budget']} ({old})"
        if key == "data" and old == "unrecorded":  # made when the data was known only by its folder
            return f"--data-root {recorded.get('data_root')} (resume it from there once to record its files)"
        if key == "data":
            return f"other data files (those of --data-root {recorded.get('data_root', 'unrecorded')})"
        return f"--{key.replace('_', '-')} {old}"

    def data_fingerprint(self) -> str:
        """sha256 over the data files of every folder this budget reads (SOURCE.md and subfolders left out)."""
        digest = hashlib.sha256()
        for folder in sorted({"lima", "val", "ifeval", "alpaca_eval", *self.budget.single_tasks}):
            files = sorted(self.data_root.joinpath(folder).glob("*"))
            for path in (f for f in files if f.is_file() and f.suffix != ".md"):
                digest.update(f"{folder}/{path.name} {file_sha256(path)}\n".encode())
        return digest.hexdigest()

    def stage_inputs(self, name: str) -> dict:
        """The arguments a stage depends on beyond the run's identity; a change reruns the stage."""
        inputs = {"data": {}, "train": {"seeds": self.args.seeds}, "convert": {"seeds": self.args.seeds}}
        inputs["evaluate"] = {"seeds": self.args.seeds, "budget": self.budget.evaluation(),
                              "alpaca_models": list(self.model_specs())}
        inputs["winrate"] = {"seeds": self.args.seeds, "judge": self.judge_name, "pairs": self.judged_pairs(),
                             "prompts": self.budget.alpaca_prompts}
        return inputs[name]

    def stage(self, name: str, work) -> dict:
        marker = self.stages / f"{name}.json"
        inputs = self.stage_inputs(name)
        finished_before = 0.0
        if marker.exists():
            earlier = json.loads(marker.read_text())
            changed = differences(earlier.get("inputs", {}), inputs)  # markers of older versions hold no inputs
            if not changed:
                self.say(f"{name}: done earlier, skipped")
                return earlier
            listed = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items())
            self.say(f"{name}: done earlier with other arguments ({listed}); doing what is missing")
            finished_before = earlier["seconds"]
        with StageClock(self.stages / f"{name}.partial.json", finished_before) as clock:
            self.say(f"{name}: resumed, {clock.earlier / 60:.1f} min spent on it earlier" if clock.earlier
                     else f"{name}: started")
            result = {"seconds": 0.0, "inputs": inputs, **work()}
            result["seconds"] = clock.seconds()
            write_atomic(marker, json.dumps(result, indent=1))
        self.say(f"{name}: finished in {result['seconds']:.0f} s")
        return result

    def say(self, text: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed / 60:6.1f} min] {text}", file=sys.stderr, flush=True)

    def cli(self, *args: str) -> str:
        command = [sys.executable, "-m", "ijt_local", *args]
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise SystemExit(f"replicate: `ijt-local {' '.join(args)}` failed (exit {result.returncode})")
        return result.stdout

    @property
    def seeds(self) -> list[int]:
        return list(range(self.args.seeds))

    def training_sets(self) -> dict[str, Path]:
        sets = {"instruct": "lima-instruction", "response": "lima-response"}
        sets.update({task: task for task in self.budget.single_tasks})
        return {name: self.out / "data" / f"{stem}.jsonl" for name, stem in sets.items()}

    # ---- stages ----------------------------------------------------------------------------------

    def data(self) -> dict:
        """Training sets hold the first N rows whose whole conversation fits in the budget's max_seq_len.
        Truncating longer rows instead would cut off their EOS: at 384 tokens that was 100 of the first 128
        LIMA conversations, and tuned models that never see EOS never learn to stop, which is one of the
        behaviours being measured."""
        b = self.budget
        data_dir = self.out / "data"
        pool_dir = data_dir / "pool"
        lima = str(self.data_root / "lima")
        for variant in ("instruction", "response"):
            self.cli("data", "prepare", "lima", "--from", lima, "--limit", str(LIMA_ROWS), "--variant", variant,
                     "--out", str(pool_dir / f"lima-{variant}.jsonl"))
        for task in b.single_tasks:
            self.cli("data", "prepare", task, "--from", str(self.data_root / task), "--limit",
                     str(POOL_FACTOR * b.train_examples), "--out", str(pool_dir / f"{task}.jsonl"))
        length = self.conversation_length()
        fits = lambda row: length(row) <= b.max_seq_len  # noqa: E731
        selection = {}
        lima_rows = read_jsonl(pool_dir / "lima-instruction.jsonl")
        chosen = select_fitting(lima_rows, fits, b.train_examples, "lima")
        chosen_ids = {row["id"] for row in chosen}
        write_jsonl_rows(data_dir / "lima-instruction.jsonl", chosen)
        response_rows = [row for row in read_jsonl(pool_dir / "lima-response.jsonl") if row["id"] in chosen_ids]
        write_jsonl_rows(data_dir / "lima-response.jsonl", response_rows)
        last_used = max(i for i, row in enumerate(lima_rows) if row["id"] in chosen_ids)
        selection["lima"] = {"kept": len(chosen), "read": last_used + 1,
                             "tokens": sum(map(length, chosen)), "response_tokens": sum(map(length, response_rows))}
        for task in b.single_tasks:
            rows = read_jsonl(pool_dir / f"{task}.jsonl")
            kept = select_fitting(rows, fits, b.train_examples, task)
            write_jsonl_rows(data_dir / f"{task}.jsonl", kept)
            selection[task] = {"kept": len(kept), "read": rows.index(kept[-1]) + 1, "tokens": sum(map(length, kept))}
        # held-out LIMA pairs for ranking: rows after the last one training used, then (when LIMA ran out)
        # the earlier ones too long to train on
        unused = lima_rows[last_used + 1:] + [row for row in lima_rows[:last_used] if row["id"] not in chosen_ids]
        held_out = unused[: b.ranking_pairs]
        for name, chosen in selection.items():
            if chosen["kept"] < b.train_examples:
                self.say(f"data: {name} has {chosen['kept']} rows that fit {b.max_seq_len} tokens, "
                         f"not the {b.train_examples} the budget asks for; training on those")
        write_jsonl_rows(data_dir / "ranking-heldout.jsonl", held_out)
        return {"sets": {k: str(v) for k, v in self.training_sets().items()}, "selection": selection,
                "max_seq_len": b.max_seq_len, "ranking_pairs": len(held_out)}

    def conversation_length(self):
        """row -> the number of tokens of its conversation as `ijt-local train` builds it."""
        from ijt_local.prompts import instruction_messages
        from ijt_local.train.base import base_folder, load_tokenizer
        from ijt_local.train.data import tokenize_conversation

        tokenizer = load_tokenizer(base_folder(self.args.base)[0], self.args.base)
        return lambda row: len(tokenize_conversation(instruction_messages(row), tokenizer)[0])

    def train_args(self, data: Path, out: Path, seed: int, **overrides) -> list[str]:
        """`ijt-local train` options for one adapter of this budget."""
        b = self.budget
        options = {"base": self.args.base, "data": data, "out": out, "epochs": b.epochs, "max-steps": b.max_steps,
                   "max-seq-len": b.max_seq_len, "batch-size": b.batch_size, "grad-accum": b.grad_accum,
                   "seed": seed, "device": "auto", **({"lr": b.lr} if b.lr is not None else {}), **overrides}
        return [part for key, value in options.items() for part in (f"--{key}", str(value))]

    def run_train(self, args: list[str]) -> None:
        """`ijt-local train`, or with --train-processes N the same options under torchrun (N processes)."""
        if self.args.train_processes == 1:
            self.cli("train", *args)
            return
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={self.args.train_processes}", "-m", "ijt_local.train"]
        if subprocess.run(launcher + args).returncode != 0:
            raise SystemExit(f"replicate: `torchrun ... -m ijt_local.train {' '.join(args)}` failed")

    def train(self) -> dict:
        runs = {}
        for name, data in self.training_sets().items():
            for seed in self.seeds:
                out = self.out / "adapters" / f"{name}-s{seed}"
                args = self.train_args(data, out, seed)
                if (out / "run.json").exists():
                    self.say(f"train {name}-s{seed}: done earlier")
                else:
                    if out.exists():
                        args.append("--resume")
                    self.say(f"train {name}-s{seed}")
                    self.run_train(args)
                manifest = json.loads((out / "run.json").read_text())
                runs[f"{name}-s{seed}"] = manifest.get("results", {})
        return {"runs": runs}

    @property
    def runtime_base(self) -> str:
        """The GGUF the runtime loads: --base itself when it is one, else --base (a Hugging Face folder or
        repo id) converted to f16 by the convert stage."""
        from ijt_local.train.base import is_gguf_base

        if is_gguf_base(self.args.base):
            return self.args.base
        return str(self.out / "gguf" / "base-f16.gguf")

    def convert_base(self) -> None:
        target = Path(self.runtime_base)
        if target.name == "base-f16.gguf" and not target.exists():
            from ijt_local.train.base import base_folder

            self.say(f"convert: {self.args.base} -> {target}")
            self.cli("convert", str(base_folder(self.args.base)[0]), "--out", str(target), "--outtype", "f16")

    def convert(self) -> dict:
        gguf_dir = self.out / "gguf"
        gguf_dir.mkdir(exist_ok=True)
        self.convert_base()
        exported = {}
        for name in self.training_sets():
            for seed in self.seeds:
                adapter = self.out / "adapters" / f"{name}-s{seed}"
                target = gguf_dir / f"{name}-s{seed}.gguf"
                if not target.exists():
                    self.cli("export-adapter", str(adapter), "--base", self.args.base, "--out", str(target))
                exported[f"{name}-s{seed}"] = str(target)
        return {"route": ADAPTER_ROUTE, "adapters": exported}

    def model_specs(self) -> dict[str, str]:
        base = self.runtime_base
        specs = {"base": base}
        for name in self.training_sets():
            for seed in self.seeds:
                specs[f"{name}-s{seed}"] = f"{base}+{self.out / 'gguf' / f'{name}-s{seed}.gguf'}"
        for name, spec in RULE_ABLATIONS.items():
            specs[name] = spec.replace("default", base, 1)
        return specs

    def evaluate(self) -> dict:
        from ijt_local.eval.compare import run_compare
        from ijt_local.eval.ifeval.run import run_ifeval
        from ijt_local.eval.ranking import run_ranking

        b = self.budget
        specs = self.model_specs()
        self.say(f"compare: {len(specs)} models on held-out val instructions")
        compared = run_compare([f"{k}={v}" for k, v in specs.items()], self.data_root / "val" / "val.jsonl",
                               self.out / "compare", max_tokens=b.max_tokens, limit=b.eval_prompts)
        ifeval, ranking = {}, {}
        for name, spec in specs.items():
            self.say(f"ifeval + ranking: {name}")
            ifeval[name] = run_ifeval(spec, self.out / "ifeval" / name, data=self.data_root / "ifeval" /
                                      "input_data.jsonl", limit=b.ifeval_prompts,
                                      max_tokens=b.max_tokens)["accuracy"]
            ranking[name] = run_ranking(spec, self.out / "data" / "ranking-heldout.jsonl",
                                        out=self.out / "ranking" / f"{name}.jsonl",
                                        max_response_tokens=b.max_tokens)
        alpaca, style_probe = self.alpaca_prompt_sets()
        self.say(f"compare: {len(specs)} models on {b.alpaca_prompts} AlpacaEval instructions")
        on_alpaca = run_compare([f"{k}={v}" for k, v in specs.items()], alpaca, self.out / "compare-alpaca",
                                max_tokens=b.max_tokens)
        if b.style_per_domain:
            styled = {name: specs[name] for name in self.style_models()}
            self.say(f"compare: {len(styled)} models on {style_probe.name} (style adherence)")
            run_compare([f"{k}={v}" for k, v in styled.items()], style_probe, self.out / "compare-style",
                        max_tokens=b.max_tokens)
        return {"compare": compared["models"], "ifeval": ifeval, "ranking": ranking,
                "compare_alpaca": on_alpaca["models"]}

    def alpaca_prompt_sets(self) -> tuple[Path, Path]:
        """Two disjoint sets of AlpacaEval instructions, drawn with a fixed seed: a uniform sample for
        win rates, and a style probe of up to `style_per_domain` further instructions from each domain
        (ijt_local/eval/style.py; AlpacaEval has only 19 poetry instructions in 805, so a uniform sample
        of 100 holds about two)."""
        from ijt_local.eval.style import DOMAINS, instruction_domain

        rows = read_jsonl(self.data_root / "alpaca_eval" / "alpaca_eval.jsonl")
        order = list(range(len(rows)))
        random.Random(ALPACA_SEED).shuffle(order)
        sample = order[: self.budget.alpaca_prompts]
        probe = []
        for domain in DOMAINS:
            probe += [i for i in order[self.budget.alpaca_prompts:]
                      if instruction_domain(rows[i]["instruction"]) == domain][: self.budget.style_per_domain]
        paths = self.out / "data" / "alpaca-sample.jsonl", self.out / "data" / "style-probe.jsonl"
        for path, indices in zip(paths, (sample, probe)):
            write_jsonl_rows(path, [{"instruction": rows[i]["instruction"], "dataset": rows[i]["dataset"]}
                                    for i in sorted(indices)])
        return paths

    def style_models(self) -> list[str]:
        """Base and the single-task models: whose style adherence the paper's single-task finding is about."""
        return [name for name in self.model_specs()
                if name == "base" or name.rsplit("-s", 1)[0] in self.budget.single_tasks]

    @property
    def judge_name(self) -> str | None:
        if self.args.judge:
            return f"local:{self.args.judge} ({self.args.judge_prompt_form})"
        return f"{self.args.judge_url} {self.args.judge_model}" if self.args.judge_url else None

    def judged_pairs(self) -> dict[str, list[str]]:
        """Per reference (instruct-sK): the models judged against it. As in the paper, a tuned model of seed
        K against the instruction-tuned model of seed K, and the untrained models (base, the rules and
        their ablations) against every seed's, so every row has a spread over seeds."""
        tuned = [name for name in self.training_sets() if name != "instruct"]
        return {reference(seed): ["base", "rules", *(f"{name}-s{seed}" for name in tuned), *ABLATIONS]
                for seed in self.seeds}

    def winrate(self) -> dict:
        """Judge the replies to the AlpacaEval sample (evaluate stage): each model against its references,
        both orders. The paper's rows (base, rules, tuned) for every seed go first, the rule ablations
        after, so that a run stopped early has the main table. Each pass judges all its references
        together, so a model judged against several seeds' references reuses its reply's judge prefix."""
        from ijt_local.eval.cli import make_judge
        from ijt_local.eval.judge import judge_against_references

        judge = make_judge(self.args.judge, self.args.judge_url, self.args.judge_model,
                           prompt_form=self.args.judge_prompt_form)
        pairs = self.judged_pairs()
        results: dict[str, dict] = {ref: {} for ref in pairs}
        for ablation_pass in (False, True):
            chosen = {ref: [name for name in names if (name in ABLATIONS) == ablation_pass]
                      for ref, names in pairs.items()}
            models = sorted({name for names in chosen.values() for name in names})
            self.say(f"winrate: {len(models)} models against {', '.join(chosen)} on {self.budget.alpaca_prompts} "
                     f"AlpacaEval instructions ({sum(map(len, chosen.values()))} pairs), judge {judge.model}")
            generations = {name: read_jsonl(self.out / "compare-alpaca" / "generations" / f"{name}.jsonl")
                           for name in [*models, *chosen]}
            for ref, summaries in judge_against_references(judge, chosen, generations, self.out / "winrate").items():
                results[ref].update(summaries)
        return {"judge": judge.model, "winrate": results}

    def stage_seconds(self) -> float:
        return sum(json.loads(m.read_text()).get("seconds", 0) for m in self.stages.glob("*.json")
                   if not m.name.endswith(".partial.json"))

    def report(self, evaluation: dict, training: dict, judged: dict | None) -> dict:
        rows = {}  # group -> one dict of metrics per model (seed)
        for name in self.model_specs():
            metrics = dict(evaluation["compare"][name]["metrics"])
            metrics["ifeval_loose_prompt"] = evaluation["ifeval"][name]["prompt_level_loose"]
            metrics["ifeval_loose_no_echo"] = evaluation["ifeval"][name].get("prompt_level_loose_no_echo")
            metrics["ranking_accuracy"] = evaluation["ranking"][name]["ranking_accuracy"]
            rows.setdefault(table_row(name), []).append(metrics)
        judged_rows = {}  # group -> one dict of win-rate figures per (model, reference) pair
        for ref, results in (judged["winrate"] if judged else {}).items():
            for name, summary in results.items():
                judged_rows.setdefault(table_row(name), []).append({
                    "winrate": summary["win_rate"], "winrate_lc": summary.get("length_controlled_win_rate"),
                    "winrate_se": summary.get("standard_error"),
                    "winrate_lc_se": summary.get("length_controlled_standard_error"),
                    "winrate_order_consistent": summary.get("order_consistent"),
                    "winrate_position_free": summary.get("position_free_win_rate"),
                    "winrate_position_free_se": summary.get("position_free_standard_error")})
        table = {}
        for group, per_seed in rows.items():
            cells = {**spread_cells(per_seed), **spread_cells(judged_rows.get(group, []))}
            cells["paper_win_rate_vs_instruct"] = PAPER_WIN_RATES.get(group)
            table[group] = cells
        judge = judge_summary(judged)
        if judge:
            judge["follows"] = self.judge_follows(judged)
        result = {"budget": self.args.budget, "base": self.args.base, "seeds": self.seeds,
                  "style": self.style(),
                  "alpaca_sample": {"prompts": self.budget.alpaca_prompts, "seed": ALPACA_SEED},
                  "adapter_route": ADAPTER_ROUTE, "models": self.model_specs(), "table": table,
                  "training": training["runs"], "training_data": self.training_data(),
                  "command": " ".join(sys.argv), "stage_seconds": round(self.stage_seconds(), 1),
                  "judge": judge}
        write_atomic(self.out / "results.json", json.dumps(result, indent=1))
        write_atomic(self.out / "results.md", render_markdown(result))
        return {"results": str(self.out / "results.md")}

    def judge_follows(self, judged: dict) -> dict:
        """What the judge's preferences follow (ijt_local/eval/judge_signals.py): correlations over every
        judged pair, and per row the position-free win rate of its echoing replies and of the others, and
        over its pairs whose two replies repeat about equally."""
        from ijt_local.eval.judge_signals import at_equal_repetition, echo_split, preference_correlates

        def replies(name: str) -> dict[str, str]:
            rows = read_jsonl(self.out / "compare-alpaca" / "generations" / f"{name}.jsonl")
            return {row["instruction"]: row["output"] for row in rows}

        pairs: dict[str, list] = {}  # table row -> (preference row, reply, reference reply)
        for ref, results in judged["winrate"].items():
            reference = replies(ref)
            for name in results:
                reply = replies(name)
                rows = read_jsonl(self.out / "winrate" / "judgements" / f"{name}-vs-{ref}.preferences.jsonl")
                pairs.setdefault(table_row(name), []).extend(
                    (row, reply[row["instruction"]], reference[row["instruction"]]) for row in rows)
        everything = [pair for group in pairs.values() for pair in group]
        return preference_correlates(everything) | {
            "echo_split": {group: echo_split(group_pairs) for group, group_pairs in pairs.items()},
            "equal_repetition": {group: at_equal_repetition(group_pairs) for group, group_pairs in pairs.items()}}

    def style(self) -> dict:
        """Per style model, per instruction domain: the share of replies that are poems and that end with a
        GSM8K answer line (ijt_local/eval/style.py), over its replies to the AlpacaEval sample and the
        style probe."""
        from ijt_local.eval.style import style_rates

        def replies(folder: str, name: str) -> list[dict]:
            path = self.out / folder / "generations" / f"{name}.jsonl"
            return read_jsonl(path) if path.exists() else []  # no style probe when the sample takes all 805

        return {name: style_rates(replies("compare-alpaca", name) + replies("compare-style", name))
                for name in self.style_models()}

    def training_data(self) -> dict:
        """Per training set: rows kept, source rows read to find them, and how many `train` truncated."""
        selection = json.loads((self.stages / "data.json").read_text())["selection"]
        sources = {"instruct": "lima", "response": "lima"}
        summary = {}
        for name in self.training_sets():
            seeds = [json.loads((self.out / "adapters" / f"{name}-s{seed}" / "run.json").read_text())["data"]
                     for seed in self.seeds]
            summary[name] = {**selection[sources.get(name, name)], "max_seq_len": self.budget.max_seq_len,
                             "truncated": max(data["truncated"] for data in seeds),
                             "tokens": seeds[0]["tokens"]}
        return summary

    def archive(self, path: Path) -> int:
        """Pack what the report is built from (stage records, replies, scores, judgements, adapters' run
        records and loss curves, the evaluation prompt sets) into a .tar.xz, leaving out what is large and
        remade from the shared data: adapter weights and checkpoints, GGUFs, training sets. Extracted into
        an OUT and rerun with the same arguments, every stage is skipped and the report is written again."""
        import tarfile
        import tempfile

        training_sets = set(self.training_sets().values())
        kept = []
        for file in sorted(self.out.rglob("*")):
            relative = file.relative_to(self.out)
            top = relative.parts[0]
            if not file.is_file() or top in ("gguf", "measure-train") or file in training_sets:
                continue
            if top == "adapters" and (relative.name not in ("run.json", "adapter_config.json", "loss_curve.csv")
                                      or "checkpoints" in relative.parts):
                continue
            kept.append(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".partial", delete=False) as tmp:
            try:
                with tarfile.open(fileobj=tmp, mode="w:xz") as tar:
                    for relative in kept:
                        tar.add(self.out / relative, arcname=str(Path(self.out.name) / relative))
            except BaseException:
                Path(tmp.name).unlink()
                raise
        Path(tmp.name).replace(path)
        return len(kept)

    def plan(self) -> dict:
        """What the budget would run, without running it: rows, optimizer steps and tokens per adapter from
        the real training sets (prepared in this scratch OUT), and times estimated from short runs here."""
        import math

        b = self.budget
        self.say("plan: preparing the training sets (rows and tokens)")
        prepared = self.data()
        selection = prepared["selection"]
        adapters = {}
        for name in self.training_sets():
            chosen = selection["lima" if name in ("instruct", "response") else name]
            rows = chosen["kept"]
            per_epoch = math.ceil(math.ceil(rows / b.batch_size) / b.grad_accum)
            steps = b.max_steps if b.max_steps > 0 else math.ceil(per_epoch * b.epochs)
            tokens = chosen["response_tokens" if name == "response" else "tokens"] * min(b.epochs, steps / per_epoch)
            adapters[name] = {"rows": rows, "steps": steps, "tokens": round(tokens)}
        seeds = self.args.seeds
        train_tokens = seeds * sum(a["tokens"] for a in adapters.values())

        processes = self.args.train_processes
        rows = b.batch_size // processes
        self.say(f"plan: timing {MEASURED_STEPS} training steps of one process's share ({rows} rows x up to "
                 f"{b.max_seq_len} tokens, the longest rows first)")
        measure = self.out / "measure-train"
        train_speed, train_note = None, None
        try:
            self.cli("train", *self.train_args(self.training_sets()["instruct"], measure, 0, **{
                "max-steps": MEASURED_STEPS, "grad-accum": 1, "save-steps": 10_000, "batch-size": rows}))
            measured = json.loads((measure / "run.json").read_text())["results"]
            # the median step leaves out the first, which also pays for start-up; N processes do N times the work
            train_speed = processes * (measured["median_step_tokens_per_second"] or measured["tokens_per_second"])
        except SystemExit as failure:  # e.g. killed for memory: the plan is still worth printing
            train_note = f"{failure} (exit -9 is the kernel killing it for memory: this machine cannot train " \
                         f"{rows} rows of {b.max_seq_len} tokens at once)"
            self.say(f"plan: training not timed: {train_note}")

        self.say("plan: timing batched generation")
        (self.out / "gguf").mkdir(exist_ok=True)
        self.convert_base()
        generate_speed = self.measure_generation()
        specs = self.model_specs()
        n_val = b.eval_prompts or len(read_jsonl(self.data_root / "val" / "val.jsonl"))
        replies = {"compare (val)": n_val * len(specs), "ifeval": b.ifeval_prompts * len(specs),
                   "compare (AlpacaEval sample)": b.alpaca_prompts * len(specs),
                   "style probe": b.style_per_domain * 4 * len(self.style_models())}
        generated = sum(replies.values()) * b.max_tokens
        judgements = sum(len(names) for names in self.judged_pairs().values()) * b.alpaca_prompts
        judge_seconds = self.measure_judgement() if self.args.judge else None
        hours = {"generate (at most)": generated / generate_speed / 3600}
        if train_speed:
            hours = {"train": train_tokens / train_speed / 3600, **hours}
        if judge_seconds is not None:
            hours["judge"] = judgements * judge_seconds / 3600
        return {"budget": self.args.budget, "base": self.args.base, "seeds": seeds,
                "train_processes": self.args.train_processes, "budget_settings": dataclasses.asdict(b),
                "adapters": adapters, "train_tokens": train_tokens, "models": len(specs), "replies": replies,
                "max_tokens": b.max_tokens, "ranking_pairs": prepared["ranking_pairs"], "judgements": judgements,
                "measured": {"train_tokens_per_second": train_speed and round(train_speed, 1),
                             "train_not_timed": train_note, "generate_tokens_per_second": generate_speed,
                             "judge_seconds_per_judgement": judge_seconds},
                "hours": {k: round(v, 2) for k, v in hours.items()}}

    def measure_generation(self) -> float:
        """Aggregate tok/s of the base generating 64 tokens for 16 val instructions, batched as evaluate does."""
        from ijt_local.batched import generate_all
        from ijt_local.models import resolve_model
        from ijt_local.runtime import Session

        prompts = [[{"role": "user", "content": row["instruction"]}]
                   for row in read_jsonl(self.data_root / "val" / "val.jsonl")[:16]]
        session = Session(resolve_model(self.runtime_base))
        try:
            started = time.perf_counter()
            tokens = sum(g.n_tokens for _, g in generate_all(session, prompts, max_tokens=64, ignore_eos=True))
            return round(tokens / (time.perf_counter() - started), 1)
        finally:
            session.close()

    def measure_judgement(self) -> float:
        """Seconds for one judgement (both orders) of two LIMA responses by --judge."""
        from ijt_local.eval.cli import make_judge

        rows = read_jsonl(self.out / "data" / "lima-instruction.jsonl")[:2]
        instruction, first, second = rows[0]["messages"][0]["content"], *(r["messages"][1]["content"] for r in rows)
        judge = make_judge(self.args.judge, None, None, prompt_form=self.args.judge_prompt_form)
        try:
            judge.judge(instruction, first, second)  # loads the model
            started = time.perf_counter()
            judge.judge(instruction, first, second)
            judge.judge(instruction, second, first)
            return round(time.perf_counter() - started, 2)
        finally:
            judge.close()

    def run(self) -> None:
        self.stage("data", self.data)
        training = self.stage("train", self.train)
        self.stage("convert", self.convert)
        evaluation = self.stage("evaluate", self.evaluate)
        judged = self.stage("winrate", self.winrate) if self.judge_name else None
        self.report(evaluation, training, judged)
        self.say(f"total stage time {self.stage_seconds() / 60:.1f} min")
        self.say(f"done: {self.out / 'results.md'}")


MEASURED_STEPS = 3  # training steps --dry-run times
LIMA_ROWS = 1030  # all of LIMA's training conversations
POOL_FACTOR = 16  # single-task rows read per training example wanted (short ones are rarer for poems)


def table_row(name: str) -> str:
    """The report row a model belongs to: its name without the seed ('poetry-s1' -> 'poetry')."""
    stem, _, seed = name.rpartition("-s")
    return stem if stem and seed.isdigit() else name


def write_jsonl_rows(path: Path, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def render_plan(plan: dict) -> str:
    b = plan["budget_settings"]
    lines = [f"plan: budget {plan['budget']}, base {plan['base']}, {plan['seeds']} seed(s), training in "
             f"{plan['train_processes']} process(es)",
             f"  training: {b['batch_size']} rows a micro-step x {b['grad_accum']} accumulated, {b['epochs']} epochs, "
             f"{b['max_seq_len']} tokens, lr {b['lr'] or 'default'}"]
    for name, adapter in plan["adapters"].items():
        lines.append(f"    {name:<10} {adapter['rows']:>6} rows {adapter['steps']:>6} steps "
                     f"{adapter['tokens']:>12,} tokens  (x {plan['seeds']} seed(s))")
    lines.append(f"  evaluation: {plan['models']} models, up to {plan['max_tokens']} tokens a reply; "
                 + ", ".join(f"{k} {v:,} replies" for k, v in plan["replies"].items() if v)
                 + f"; ranking {plan['ranking_pairs']} pairs a model")
    lines.append(f"  win rates: {plan['judgements']:,} judgements, both orders")
    m = plan["measured"]
    training = (f"training {m['train_tokens_per_second']:,} tok/s" if m["train_tokens_per_second"]
                else f"training not timed ({m['train_not_timed']})")
    lines.append(f"  measured here: {training}, batched generation "
                 f"{m['generate_tokens_per_second']:,} tok/s"
                 + (f", judge {m['judge_seconds_per_judgement']} s a judgement"
                    if m["judge_seconds_per_judgement"] is not None else " (pass --judge to time the judge)"))
    lines.append("  estimated hours here: " + ", ".join(f"{k} {v}" for k, v in plan["hours"].items())
                 + f"; total {sum(plan['hours'].values()):.1f}")
    return "\n".join(lines)


def select_fitting(rows: list[dict], fits, wanted: int, name: str) -> list[dict]:
    """The first `wanted` rows that fit; all that fit when the source runs out first (the paper's poetry set
    has 573 poems for a 1,000-example budget; 981 of LIMA's 1,030 conversations fit 2,048 gemma tokens)."""
    kept = []
    for row in rows:
        if fits(row):
            kept.append(row)
            if len(kept) == wanted:
                return kept
    if kept and len(rows) < POOL_FACTOR * wanted:  # every row the source has was read
        return kept
    raise SystemExit(f"replicate: only {len(kept)} of {len(rows)} {name} rows fit the budget's max_seq_len; "
                     f"{wanted} wanted")


COLUMNS = [
    ("stop_rate", "stop rate", True),
    ("echo_rate", "echo rate", True),
    ("role_leak_rate", "role-tag leak", True),
    ("repetition_rate", "repetition", True),
    ("mean_tokens", "mean tokens", False),
    ("ifeval_loose_prompt", "IFEval loose (prompt)", True),
    ("ifeval_loose_no_echo", "IFEval, echoes failing", True),
    ("ranking_accuracy", "ranking acc.", True),
    ("winrate", "win rate vs instruct", True),
    ("winrate_lc", "LC win rate vs instruct", True),
]


def spread_cells(per_seed: list[dict]) -> dict:
    """Per metric: mean, standard deviation and count over the seeds (or pairs) that have a number."""
    cells = {}
    for key in per_seed[0] if per_seed else ():
        values = [m[key] for m in per_seed if isinstance(m.get(key), (int, float))]
        if values:
            cells[key] = {"mean": statistics.mean(values),
                          "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}
    return cells


def judge_summary(judged: dict | None) -> dict | None:
    """Who judged, and how far that judge can be trusted: its measured agreement with GPT-4 if known."""
    if not judged:
        return None
    some = next((summary for results in judged["winrate"].values() for summary in results.values()), {})
    return {"model": judged["judge"], "references": list(judged["winrate"]),
            "agreement_with_gpt4": some.get("judge_agreement_with_gpt4"), "note": some.get("note")}


def render_markdown(result: dict) -> str:
    table = result["table"]
    present = [c for c in COLUMNS if any(c[0] in cells for cells in table.values())]
    lines = [
        f"# Replication: base `{result['base']}`, budget `{result['budget']}`, seeds "
        f"{', '.join(map(str, result['seeds']))}",
        "",
        f"Command: `{result['command']}`  ",
        f"Time: {result['stage_seconds'] / 60:.1f} min, summed over the stages (across resumed invocations)  ",
        f"Tuned models run as {result['adapter_route']}.",
        "",
        "Training sets: the first rows whose whole conversation fits in the context, so every example ends "
        "with EOS:",
        "",
        *[f"- {name}: {d['kept']} rows of ≤ {d['max_seq_len']} tokens, found in the first {d['read']} source "
          f"rows; {d['tokens']:,} tokens; {d['truncated']} truncated" for name, d in result["training_data"].items()],
        "",
        "| model | " + " | ".join(title for _, title, _ in present) + " | paper win rate vs instruct (Llama-2-7B) |",
        "| --- " * (len(present) + 2) + "|",
    ]
    for group, cells in table.items():
        row = [group]
        for key, _, is_rate in present:
            cell = cells.get(key)
            if cell is None:
                row.append("–")
                continue
            scale, unit = (100, "%") if is_rate else (1, "")
            text = f"{cell['mean'] * scale:.1f}{unit}"
            if cell["n"] > 1:
                text += f" ± {cell['std'] * scale:.1f}"
            row.append(text)
        paper = cells.get("paper_win_rate_vs_instruct")
        row.append(f"{paper} %" if paper is not None else "")
        lines.append("| " + " | ".join(row) + " |")
    judge = result.get("judge")
    if judge:
        agreement = judge["agreement_with_gpt4"]
        lines += ["", f"Win rates: judged by {judge['model']}, both orders averaged, each model against the "
                  "instruction-tuned model of its seed (base and the rules, which have no seed, against each of "
                  f"{', '.join(f'`{r}`' for r in judge['references'])}); LC = length-controlled (AlpacaEval 2's "
                  "logistic model read at equal length)."]
        if agreement:
            lines.append(f"This judge agrees with GPT-4 on {agreement['agreement']:.1%} ± "
                         f"{agreement['agreement_se']:.1%} of {agreement['pairs']} AlpacaEval pairs, against "
                         f"{agreement['length_baseline']:.1%} for 'the longer output wins' on the same pairs.")
        if judge.get("note"):
            lines.append(f"Note: {judge['note']}.")
        lines += winrate_markdown(table)
        lines += follows_markdown(judge.get("follows"))
    lines += style_markdown(result["style"])
    lines += ["", "Rates are over held-out instructions (the paper's 56 val instructions for the behaviour "
              f"metrics, IFEval prompts, held-out LIMA pairs for ranking, {result['alpaca_sample']['prompts']} "
              "AlpacaEval instructions drawn with seed "
              f"{result['alpaca_sample']['seed']} for win rates); ± is the standard deviation over seeds. "
              "'IFEval, echoes failing' counts a reply that restates the prompt as a failure: the IFEval prompts "
              "themselves, scored as replies, pass 29.8 % loose, so a model that echoes gets IFEval credit for "
              "quoting the instructions.", ""]
    return "\n".join(lines)


def winrate_markdown(table: dict) -> list[str]:
    """Win rates with both kinds of spread: over instructions (s.e., mean over seeds) and over seeds (sd),
    and how often the judge's two orders named the same winner."""
    judged = {group: cells for group, cells in table.items() if "winrate" in cells}
    if not judged:
        return []

    def percent(cells: dict, key: str) -> str:
        cell = cells.get(key)
        return "–" if cell is None else f"{cell['mean'] * 100:.1f}"

    def spread(cells: dict, key: str) -> str:
        cell = cells.get(key)
        return "–" if cell is None or cell["n"] < 2 else f"{cell['std'] * 100:.1f}"

    lines = ["", "| model | seeds | win rate % | s.e. (instructions) | sd (seeds) | LC win rate % | LC s.e. | "
             "LC sd (seeds) | position-free win rate % | its s.e. | its sd (seeds) | order-consistent verdicts % |",
             "| --- " * 12 + "|"]
    for group, cells in judged.items():
        lines.append(f"| {group} | {cells['winrate']['n']} | {percent(cells, 'winrate')} | "
                     f"{percent(cells, 'winrate_se')} | {spread(cells, 'winrate')} | {percent(cells, 'winrate_lc')} | "
                     f"{percent(cells, 'winrate_lc_se')} | {spread(cells, 'winrate_lc')} | "
                     f"{percent(cells, 'winrate_position_free')} | {percent(cells, 'winrate_position_free_se')} | "
                     f"{spread(cells, 'winrate_position_free')} | {percent(cells, 'winrate_order_consistent')} |")
    lines += ["", "Order-consistent verdicts: the share of instructions on which the judge names the same winner "
              "in both orders. Near 0, each order mostly picks a position and a win rate near 50 % says only "
              "how far the judge's probabilities moved, not that it found the replies equal. Position-free: "
              "each instruction's two judgements read as quality difference ± a position bias in log-odds, "
              "the bias taken out (ijt_local/eval/winrate_stats.py); same side of 50 % as the win rate, "
              "not shrunk toward it."]
    return lines


def follows_markdown(follows: dict | None) -> list[str]:
    from ijt_local.eval.judge_signals import EQUAL_REPETITION

    if not follows or not follows["pairs"]:
        return []

    def r(signal: str) -> str:
        return "–" if follows[signal] is None else f"{follows[signal]:+.2f}"

    def rate(cell: dict | None) -> str:
        value = (cell or {}).get("position_free_win_rate")
        if value is None:
            return "–"
        spread = f" ± {cell['standard_error'] * 100:.1f}" if cell.get("standard_error") is not None else ""
        return f"{value * 100:.1f}{spread} ({cell['pairs']})"

    lines = ["", f"What the judge's preferences follow, over all {follows['pairs']} judged (reply, reference) "
             f"pairs: correlation of the position-free preference with the reply's repetition minus the "
             f"reference's {r('repetition')}, with its echo minus the reference's (each 0 or 1) "
             f"{r('echo')}, with log length ratio {r('length')} (ijt_local/eval/judge_signals.py). A judge that "
             "reads answers punishes echoes: per row, the position-free win rate % (pairs) of replies that "
             "restate the instruction and of the others, against references that do not; and over the pairs "
             f"whose reply and reference repeat about equally (repetition within {EQUAL_REPETITION} of each "
             "other), where repetition cannot decide (± its s.e.):", "",
             "| model | echoing replies | other replies | at equal repetition |", "| --- | --- | --- | --- |"]
    equal = follows.get("equal_repetition", {})
    for group, split in follows.get("echo_split", {}).items():
        lines.append(f"| {group} | {rate(split['echo'])} | {rate(split['no_echo'])} | {rate(equal.get(group))} |")
    return lines


def style_markdown(style: dict) -> list[str]:
    """Single-task style adherence: poem and `####` shares by instruction domain for base and the
    single-task models, averaged over seeds (ijt_local/eval/style.py)."""
    groups: dict[str, list[dict]] = {}
    for name, rates in style.items():
        groups.setdefault(table_row(name), []).append(rates)
    domains = [d for d in ("poetry", "math", "creative", "other") if any(d in r for rs in groups.values() for r in rs)]
    if not domains:
        return []
    counts = {d: max(r.get(d, {}).get("n", 0) for rs in groups.values() for r in rs) for d in domains}

    def share(rates: list[dict], key: str) -> str:
        values = [r[key] for r in rates]
        text = f"{statistics.mean(values):.0%}"
        return text + f" ± {statistics.stdev(values) * 100:.0f}" if len(values) > 1 else text

    lines = ["", "Style adherence on AlpacaEval instructions by domain (decided from the instruction): share of "
             "replies that are poems / in verse form (short line-broken lines, repetition loops included) / "
             "that end with a GSM8K `#### number` line, mean ± sd over seeds:", "",
             "| model | " + " | ".join(f"{d} (n={counts[d]})" for d in domains) + " |",
             "| --- " * (len(domains) + 1) + "|"]
    for group, per_seed in groups.items():
        cells = []
        for d in domains:
            seeds = [r[d] for r in per_seed if d in r]
            cells.append(" / ".join(share(seeds, key) for key in ("poem_rate", "verse_rate", "gsm8k_answer_rate"))
                         if seeds else "–")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines


def differences(recorded: dict, now: dict) -> dict[str, tuple]:
    """key -> (recorded value, value now) for every key of `now` whose value changed."""
    return {key: (recorded.get(key, "unrecorded"), value) for key, value in now.items()
            if recorded.get(key) != value}


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description="Replicate Hewitt et al. 2024 at laptop scale.")
    parser.add_argument("--base", default="default")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="smoke")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=positive_int, default=1, help="adapters trained per training set")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA))
    parser.add_argument("--judge", default=None, metavar="SPEC",
                        help="in-process judge for win rates, e.g. judge (pip install -e \".[judge]\")")
    parser.add_argument("--judge-prompt-form", choices=sorted(PROMPT_FORMS), default=DEFAULT_FORM,
                        help="how --judge is asked (ijt_local/eval/judge_prompts.py)")
    parser.add_argument("--judge-url", default=None, help="OpenAI-compatible judge endpoint instead of --judge")
    parser.add_argument("--judge-model", default="judge", help="model name sent to --judge-url")
    parser.add_argument("--train-processes", type=positive_int, default=1,
                        help="train each adapter in N data-parallel processes (torchrun; one per GPU)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (rows, steps, tokens, estimated hours from short runs here); "
                             "OUT is not touched")
    parser.add_argument("--archive", default=None, metavar="FILE.tar.xz",
                        help="instead of running, pack OUT without adapter weights, GGUFs or training sets: "
                             "the replies, judgements, scores and stage records the report is built from")
    args = parser.parse_args()
    if args.judge and args.judge_url:
        raise SystemExit("replicate: give either --judge SPEC or --judge-url URL, not both")
    if BUDGETS[args.budget].batch_size % args.train_processes:
        raise SystemExit(f"replicate: budget {args.budget} trains {BUDGETS[args.budget].batch_size} rows a step, "
                         f"which {args.train_processes} processes cannot share evenly")
    if not (Path(args.data_root) / "lima").is_dir():
        raise SystemExit(f"replicate: {args.data_root}: no lima/ folder (pass --data-root)")
    try:
        if args.dry_run:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="ijt-plan-") as scratch:
                plan = Replication(args, out=scratch).plan()
            print(render_plan(plan))
            print(json.dumps(plan))
        elif args.archive:
            if not (Path(args.out) / "replication.json").is_file():
                raise SystemExit(f"replicate: {args.out}: no replication run to archive (no replication.json)")
            members = Replication(args).archive(Path(args.archive))
            print(f"replicate: {args.archive}: {members} files, {Path(args.archive).stat().st_size:,} bytes")
        else:
            Replication(args).run()
    except UserError as error:  # from the evaluation verbs, which run in this process
        raise SystemExit(f"replicate: {error}")


if __name__ == "__main__":
    main()
