"""The replication's stages. Each runs in this process through the library, so a fault is the library's one
clear line; only training runs as `ijt-local train` in a subprocess (under torchrun with --train-processes).

  data      LIMA (instruction and response-only variants) and the single-task sets, from local files
  train     LoRA adapters: instruction-tuned, response-tuned, each single task, per seed
  convert   each adapter to a GGUF LoRA adapter over the one quantized base (budgets.ADAPTER_ROUTE)
  evaluate  compare on held-out instructions (behaviour metrics), IFEval, ranking
  winrate   with a judge: each model's replies judged against those of the instruction-tuned model of
            the same seed (the untrained base and rule models against every seed's), both orders
  winrate-reference
            with a judge, the same pairs judged again by the default reference-guided judge (chrf1: the
            reply closer to GPT-4's answer wins, ijt_local/eval/reference_judges.py), into OUT/winrate-reference;
            it needs no model, so a run restored from its archive adds it
  report    OUT/results.md and OUT/results.json (report.py)
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..data.home import shared_data_path
from ..errors import UserError
from ..eval.judge_prompts import DEFAULT_FORM
from ..eval.reference_judges import DEFAULT_REFERENCE_JUDGE
from ..jsonl import read_jsonl, write_atomic
from .budgets import ADAPTER_ROUTE, ALPACA_SEED, BUDGETS
from .lineup import ABLATIONS, EXTRA_RULES, Lineup
from .report import write_report
from .run_folder import RunFolder, data_fingerprint

LIMA_ROWS = 1030  # all of LIMA's training conversations
POOL_FACTOR = 16  # single-task rows read per training example wanted (short ones are rarer for poems)
REFERENCE_ANSWERS = "alpaca_eval/references/gpt4.jsonl"  # under --data-root: GPT-4 0314's answers
REFERENCE_JUDGE = f"{DEFAULT_REFERENCE_JUDGE} (reference-guided)"  # make_judge's default with reference answers


@dataclass(frozen=True)
class Options:
    """What `ijt-local replicate` is asked for (its options, less --dry-run and --archive)."""

    out: Path
    base: str = "default"
    budget: str = "smoke"
    seeds: int = 1
    data_root: Path = field(default_factory=shared_data_path)
    judge: str | None = None  # an in-process judge SPEC
    judge_prompt_form: str = DEFAULT_FORM
    judge_url: str | None = None  # or an OpenAI-compatible endpoint
    judge_model: str = "judge"
    train_processes: int = 1

    def check(self) -> None:
        """Bad combinations, each as one line."""
        if self.budget not in BUDGETS:
            raise UserError(f"--budget {self.budget}: not one of {', '.join(sorted(BUDGETS))}")
        if self.judge and self.judge_url:
            raise UserError("give either --judge SPEC or --judge-url URL, not both")
        rows = BUDGETS[self.budget].batch_size
        if rows % self.train_processes:
            raise UserError(
                f"budget {self.budget} trains {rows} rows a step, which {self.train_processes} "
                f"processes cannot share evenly"
            )
        if not (Path(self.data_root) / "lima").is_dir():
            raise UserError(f"{self.data_root}: no lima/ folder (run: ijt-local data fetch all, or pass --data-root)")

    @property
    def judge_name(self) -> str | None:
        if self.judge:
            return f"local:{self.judge} ({self.judge_prompt_form})"
        return f"{self.judge_url} {self.judge_model}" if self.judge_url else None


class Replication:
    def __init__(self, options: Options, out: Path | None = None):
        """A replication in `out` (default: options.out), claimed for this run (run_folder.RunFolder)."""
        self.options = options
        self.budget = BUDGETS[options.budget]
        self.data_root = Path(options.data_root).resolve()
        identity = {
            "base": options.base,
            "budget": options.budget,
            "training": self.budget.training(),
            "data": data_fingerprint(
                self.data_root, {"lima", "val", "ifeval", "alpaca_eval", *self.budget.single_tasks}
            ),
        }
        self.folder = RunFolder(Path(out or options.out), identity, self.data_root)
        self.out = self.folder.out
        self.lineup = Lineup(options.base, self.budget, options.seeds, self.out)
        self.say = self.folder.say

    def stage_inputs(self, name: str) -> dict:
        """The arguments a stage depends on beyond the run's identity; a change reruns the stage."""
        seeds = self.options.seeds
        return {
            "data": {},
            "train": {"seeds": seeds},
            "convert": {"seeds": seeds},
            "evaluate": {
                "seeds": seeds,
                "budget": self.budget.evaluation(),
                "alpaca_models": list(self.lineup.model_specs()),
            },
            "winrate": {
                "seeds": seeds,
                "judge": self.options.judge_name,
                "pairs": self.lineup.judged_pairs(),
                "prompts": self.budget.alpaca_prompts,
            },
            "winrate-reference": {
                "seeds": seeds,
                "judge": REFERENCE_JUDGE,
                "pairs": self.lineup.judged_pairs(),
                "prompts": self.budget.alpaca_prompts,
                "reference_answers": REFERENCE_ANSWERS,
            },
        }[name]

    def stage(self, name: str, work) -> dict:
        return self.folder.stage(name, self.stage_inputs(name), work)

    def run(self) -> None:
        self.stage("data", self.data)
        training = self.stage("train", self.train)
        self.stage("convert", self.convert)
        evaluation = self.stage("evaluate", self.evaluate)
        judged = self.stage("winrate", self.winrate) if self.options.judge_name else None
        reference_judged = (
            self.stage("winrate-reference", self.winrate_reference)
            if self.options.judge_name and self.reference_answers_path().is_file()
            else None
        )
        write_report(self, evaluation, training, judged, reference_judged)
        self.say(f"total stage time {self.folder.stage_seconds() / 60:.1f} min")
        self.say(f"done: {self.out / 'results.md'}")

    # ---- data ------------------------------------------------------------------------------------

    def data(self) -> dict:
        """Training sets hold the first N rows whose whole conversation fits in the budget's max_seq_len.
        Truncating longer rows instead would cut off their EOS: at 384 tokens that was 100 of the first 128
        LIMA conversations, and tuned models that never see EOS never learn to stop, which is one of the
        behaviours being measured."""
        from ..data.prepare import prepare

        b = self.budget
        data_dir = self.out / "data"
        pool_dir = data_dir / "pool"
        for variant in ("instruction", "response"):
            prepare(
                "lima",
                pool_dir / f"lima-{variant}.jsonl",
                from_path=self.data_root / "lima",
                limit=LIMA_ROWS,
                variant=variant,
            )
        for task in b.single_tasks:
            prepare(
                task, pool_dir / f"{task}.jsonl", from_path=self.data_root / task, limit=POOL_FACTOR * b.train_examples
            )
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
        selection["lima"] = {
            "kept": len(chosen),
            "read": last_used + 1,
            "tokens": sum(map(length, chosen)),
            "response_tokens": sum(map(length, response_rows)),
        }
        for task in b.single_tasks:
            rows = read_jsonl(pool_dir / f"{task}.jsonl")
            kept = select_fitting(rows, fits, b.train_examples, task)
            write_jsonl_rows(data_dir / f"{task}.jsonl", kept)
            selection[task] = {"kept": len(kept), "read": rows.index(kept[-1]) + 1, "tokens": sum(map(length, kept))}
        # held-out LIMA pairs for ranking: rows after the last one training used, then (when LIMA ran out)
        # the earlier ones too long to train on
        unused = lima_rows[last_used + 1 :] + [row for row in lima_rows[:last_used] if row["id"] not in chosen_ids]
        held_out = unused[: b.ranking_pairs]
        for name, chosen in selection.items():
            if chosen["kept"] < b.train_examples:
                self.say(
                    f"data: {name} has {chosen['kept']} rows that fit {b.max_seq_len} tokens, "
                    f"not the {b.train_examples} the budget asks for; training on those"
                )
        write_jsonl_rows(data_dir / "ranking-heldout.jsonl", held_out)
        return {
            "sets": {k: str(v) for k, v in self.lineup.training_sets().items()},
            "selection": selection,
            "max_seq_len": b.max_seq_len,
            "ranking_pairs": len(held_out),
        }

    def conversation_length(self):
        """row -> the number of tokens of its conversation as `ijt-local train` builds it."""
        from ..prompts import instruction_messages
        from ..train.base import base_folder, load_tokenizer
        from ..train.data import tokenize_conversation

        tokenizer = load_tokenizer(base_folder(self.options.base)[0], self.options.base)
        return lambda row: len(tokenize_conversation(instruction_messages(row), tokenizer)[0])

    # ---- train -----------------------------------------------------------------------------------

    def train_args(self, data: Path, out: Path, seed: int, **overrides) -> list[str]:
        """`ijt-local train` options for one adapter of this budget."""
        b = self.budget
        options = {
            "base": self.options.base,
            "data": data,
            "out": out,
            "epochs": b.epochs,
            "max-steps": b.max_steps,
            "max-seq-len": b.max_seq_len,
            "batch-size": b.batch_size,
            "grad-accum": b.grad_accum,
            "seed": seed,
            "device": "auto",
            **({"lr": b.lr} if b.lr is not None else {}),
            **overrides,
        }
        return [part for key, value in options.items() for part in (f"--{key}", str(value))]

    def run_train(self, args: list[str], processes: int | None = None) -> None:
        """`ijt-local train` in a subprocess (it frees the memory training takes), or in N processes
        (default --train-processes) under torchrun. Its own error is on stderr above the line raised here."""
        processes = processes or self.options.train_processes
        command = (
            [sys.executable, "-m", "ijt_local", "train"]
            if processes == 1
            else [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={processes}",
                "-m",
                "ijt_local.train",
            ]
        )
        # stdout carries only train's summary; --dry-run's stdout is the plan
        result = subprocess.run(command + args, stdout=subprocess.DEVNULL)
        if result.returncode != 0:
            raise UserError(f"training failed (exit {result.returncode}): ijt-local train {' '.join(args)}")

    def train(self) -> dict:
        runs = {}
        for name, data in self.lineup.training_sets().items():
            for seed in self.lineup.seed_list:
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

    # ---- convert ---------------------------------------------------------------------------------

    def convert_base(self) -> None:
        """A Hugging Face --base as the f16 GGUF the runtime loads (a GGUF --base is loaded as it is)."""
        target = Path(self.lineup.runtime_base)
        if target.name == "base-f16.gguf" and not target.exists():
            from ..convert.hf_to_gguf import convert
            from ..train.base import base_folder

            self.say(f"convert: {self.options.base} -> {target}")
            convert(base_folder(self.options.base)[0], target, "f16")

    def convert(self) -> dict:
        from ..convert.export_adapter import export_adapter

        gguf_dir = self.out / "gguf"
        gguf_dir.mkdir(exist_ok=True)
        self.convert_base()
        exported = {}
        for name in self.lineup.tuned():
            target = gguf_dir / f"{name}.gguf"
            if not target.exists():
                export_adapter(self.out / "adapters" / name, self.options.base, target)
            exported[name] = str(target)
        return {"route": ADAPTER_ROUTE, "adapters": exported}

    # ---- evaluate --------------------------------------------------------------------------------

    def evaluate(self) -> dict:
        from ..eval.compare import run_compare
        from ..eval.ifeval.run import run_ifeval
        from ..eval.ranking import run_ranking

        b = self.budget
        specs = self.lineup.model_specs()
        pairs = [f"{k}={v}" for k, v in specs.items()]
        self.say(f"compare: {len(specs)} models on held-out val instructions")
        compared = run_compare(
            pairs,
            self.data_root / "val" / "val.jsonl",
            self.out / "compare",
            max_tokens=b.max_tokens,
            limit=b.eval_prompts,
        )
        ifeval, ranking = {}, {}
        for name, spec in specs.items():
            self.say(f"ifeval + ranking: {name}")
            ifeval[name] = run_ifeval(
                spec,
                self.out / "ifeval" / name,
                data=self.data_root / "ifeval" / "input_data.jsonl",
                limit=b.ifeval_prompts,
                max_tokens=b.max_tokens,
            )["accuracy"]
            ranking[name] = run_ranking(
                spec,
                self.out / "data" / "ranking-heldout.jsonl",
                out=self.out / "ranking" / f"{name}.jsonl",
                max_response_tokens=b.max_tokens,
                others=b.ranking_others,
            )
        alpaca, style_probe = self.alpaca_prompt_sets()
        self.say(f"compare: {len(specs)} models on {b.alpaca_prompts} AlpacaEval instructions")
        on_alpaca = run_compare(pairs, alpaca, self.out / "compare-alpaca", max_tokens=b.max_tokens)
        if b.style_per_domain:
            styled = {name: specs[name] for name in self.lineup.style_models()}
            self.say(f"compare: {len(styled)} models on {style_probe.name} (style adherence)")
            run_compare(
                [f"{k}={v}" for k, v in styled.items()],
                style_probe,
                self.out / "compare-style",
                max_tokens=b.max_tokens,
            )
        return {
            "compare": compared["models"],
            "ifeval": ifeval,
            "ranking": ranking,
            "compare_alpaca": on_alpaca["models"],
        }

    def alpaca_prompt_sets(self) -> tuple[Path, Path]:
        """Two disjoint sets of AlpacaEval instructions, drawn with a fixed seed: a uniform sample for
        win rates, and a style probe of up to `style_per_domain` further instructions from each domain
        (ijt_local/eval/style.py; AlpacaEval has only 19 poetry instructions in 805, so a uniform sample
        of 100 holds about two)."""
        from ..eval.style import DOMAINS, instruction_domain

        rows = read_jsonl(self.data_root / "alpaca_eval" / "alpaca_eval.jsonl")
        order = list(range(len(rows)))
        random.Random(ALPACA_SEED).shuffle(order)
        sample = order[: self.budget.alpaca_prompts]
        probe = []
        for domain in DOMAINS:
            probe += [
                i for i in order[self.budget.alpaca_prompts :] if instruction_domain(rows[i]["instruction"]) == domain
            ][: self.budget.style_per_domain]
        paths = self.out / "data" / "alpaca-sample.jsonl", self.out / "data" / "style-probe.jsonl"
        for path, indices in zip(paths, (sample, probe)):
            write_jsonl_rows(
                path, [{"instruction": rows[i]["instruction"], "dataset": rows[i]["dataset"]} for i in sorted(indices)]
            )
        return paths

    # ---- winrate ---------------------------------------------------------------------------------

    def winrate(self) -> dict:
        """Judge the replies to the AlpacaEval sample (evaluate stage): each model against its references,
        both orders. The paper's rows (base, rules, tuned) for every seed go first, the rule ablations and
        the rules with `start` after, so that a run stopped early has the main table. Each pass judges all
        its references together, so a model judged against several seeds' references reuses its reply's
        judge prefix."""
        from ..eval.judge import judge_against_references, make_judge

        o = self.options
        judge = make_judge(o.judge, o.judge_url, o.judge_model, prompt_form=o.judge_prompt_form)
        pairs = self.lineup.judged_pairs()
        results: dict[str, dict] = {ref: {} for ref in pairs}
        for ablation_pass in (False, True):
            chosen = {
                ref: [name for name in names if (name in ABLATIONS + EXTRA_RULES) == ablation_pass]
                for ref, names in pairs.items()
            }
            models = sorted({name for names in chosen.values() for name in names})
            self.say(
                f"winrate: {len(models)} models against {', '.join(chosen)} on {self.budget.alpaca_prompts} "
                f"AlpacaEval instructions ({sum(map(len, chosen.values()))} pairs), judge {judge.model}"
            )
            generations = {
                name: read_jsonl(self.out / "compare-alpaca" / "generations" / f"{name}.jsonl")
                for name in [*models, *chosen]
            }
            for ref, summaries in judge_against_references(judge, chosen, generations, self.out / "winrate").items():
                results[ref].update(summaries)
        return {"judge": judge.model, "winrate": results}

    def reference_answers_path(self) -> Path:
        return self.data_root / REFERENCE_ANSWERS

    def winrate_reference(self) -> dict:
        """The winrate stage's pairs judged again by the default reference-guided judge (no model: it compares
        each reply with GPT-4's answer), into OUT/winrate-reference so the first judge's files stay."""
        from ..eval.judge import judge_against_references, make_judge

        judge = make_judge(None, None, None, reference_answers=self.reference_answers_path())
        pairs = self.lineup.judged_pairs()
        models = sorted({name for names in pairs.values() for name in names})
        self.say(
            f"winrate-reference: {len(models)} models against {', '.join(pairs)} on "
            f"{self.budget.alpaca_prompts} AlpacaEval instructions, judge {judge.model}"
        )
        generations = {
            name: read_jsonl(self.out / "compare-alpaca" / "generations" / f"{name}.jsonl")
            for name in [*models, *pairs]
        }
        results = judge_against_references(judge, pairs, generations, self.out / "winrate-reference")
        return {"judge": judge.model, "reference_answers": REFERENCE_ANSWERS, "winrate": results}

    def archive(self, path: Path) -> int:
        """OUT packed without what is large and remade from the shared data (run_folder.RunFolder.archive)."""
        return self.folder.archive(path, leave_out=set(self.lineup.training_sets().values()))


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
    raise UserError(f"only {len(kept)} of {len(rows)} {name} rows fit the budget's max_seq_len; {wanted} wanted")


def write_jsonl_rows(path: Path, rows: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))
