"""`--dry-run`: what a budget would run, without running it. Rows, optimizer steps and tokens per adapter
come from the real training sets (prepared in a scratch run folder); times are estimated from short runs
on this machine (a few training steps, batched generation, and the judge when one is given)."""

from __future__ import annotations

import dataclasses
import json
import math
import time

from ..errors import UserError
from ..jsonl import read_jsonl

MEASURED_STEPS = 3  # training steps a plan times


def plan(run) -> dict:
    """`run` is a stages.Replication in a scratch folder."""
    b = run.budget
    run.say("plan: preparing the training sets (rows and tokens)")
    prepared = run.data()
    selection = prepared["selection"]
    adapters = {}
    for name in run.lineup.training_sets():
        chosen = selection["lima" if name in ("instruct", "response") else name]
        rows = chosen["kept"]
        per_epoch = math.ceil(math.ceil(rows / b.batch_size) / b.grad_accum)
        steps = b.max_steps if b.max_steps > 0 else math.ceil(per_epoch * b.epochs)
        tokens = chosen["response_tokens" if name == "response" else "tokens"] * min(b.epochs, steps / per_epoch)
        adapters[name] = {"rows": rows, "steps": steps, "tokens": round(tokens)}
    seeds = run.options.seeds
    train_tokens = seeds * sum(a["tokens"] for a in adapters.values())

    processes = run.options.train_processes
    rows = b.batch_size // processes
    run.say(
        f"plan: timing {MEASURED_STEPS} training steps of one process's share ({rows} rows x up to "
        f"{b.max_seq_len} tokens, the longest rows first)"
    )
    measure = run.out / "measure-train"
    train_speed, train_note = None, None
    try:
        run.run_train(
            run.train_args(
                run.lineup.training_sets()["instruct"],
                measure,
                0,
                **{"max-steps": MEASURED_STEPS, "grad-accum": 1, "save-steps": 10_000, "batch-size": rows},
            ),
            processes=1,
        )
        measured = json.loads((measure / "run.json").read_text())["results"]
        # the median step leaves out the first, which also pays for start-up; N processes do N times the work
        train_speed = processes * (measured["median_step_tokens_per_second"] or measured["tokens_per_second"])
    except UserError as failure:  # e.g. killed for memory: the plan is still worth printing
        train_note = (
            f"{failure} (exit -9 is the kernel killing it for memory: this machine cannot train "
            f"{rows} rows of {b.max_seq_len} tokens at once)"
        )
        run.say(f"plan: training not timed: {train_note}")

    run.say("plan: timing batched generation")
    (run.out / "gguf").mkdir(exist_ok=True)
    run.convert_base()
    generate_speed = measure_generation(run.lineup.runtime_base, run.data_root / "val" / "val.jsonl")
    specs = run.lineup.model_specs()
    n_val = b.eval_prompts or len(read_jsonl(run.data_root / "val" / "val.jsonl"))
    replies = {
        "compare (val)": n_val * len(specs),
        "ifeval": b.ifeval_prompts * len(specs),
        "compare (AlpacaEval sample)": b.alpaca_prompts * len(specs),
        "style probe": b.style_per_domain * 4 * len(run.lineup.style_models()),
    }
    generated = sum(replies.values()) * b.max_tokens
    judgements = sum(len(names) for names in run.lineup.judged_pairs().values()) * b.alpaca_prompts
    judge_seconds = measure_judgement(run) if run.options.judge else None
    hours = {"generate (at most)": generated / generate_speed / 3600}
    if train_speed:
        hours = {"train": train_tokens / train_speed / 3600, **hours}
    if judge_seconds is not None:
        hours["judge"] = judgements * judge_seconds / 3600
    return {
        "budget": run.options.budget,
        "base": run.options.base,
        "seeds": seeds,
        "train_processes": processes,
        "budget_settings": dataclasses.asdict(b),
        "adapters": adapters,
        "train_tokens": train_tokens,
        "models": len(specs),
        "replies": replies,
        "max_tokens": b.max_tokens,
        "ranking_pairs": prepared["ranking_pairs"],
        "judgements": judgements,
        "measured": {
            "train_tokens_per_second": train_speed and round(train_speed, 1),
            "train_not_timed": train_note,
            "generate_tokens_per_second": generate_speed,
            "judge_seconds_per_judgement": judge_seconds,
        },
        "hours": {k: round(v, 2) for k, v in hours.items()},
    }


def measure_generation(model: str, val_path) -> float:
    """Aggregate tok/s of `model` generating 64 tokens for 16 val instructions, batched as evaluate does."""
    from ..runtime.batch import generate_all
    from ..runtime.specs import open_spec

    prompts = [[{"role": "user", "content": row["instruction"]}] for row in read_jsonl(val_path)[:16]]
    with open_spec(model) as loaded:
        started = time.perf_counter()
        tokens = sum(g.n_tokens for _, g in generate_all(loaded.session, prompts, max_tokens=64, ignore_eos=True))
        return round(tokens / (time.perf_counter() - started), 1)


def measure_judgement(run) -> float:
    """Seconds for one judgement (both orders) of two LIMA responses by --judge."""
    from ..eval.judge import make_judge

    rows = read_jsonl(run.out / "data" / "lima-instruction.jsonl")[:2]
    instruction, first, second = rows[0]["messages"][0]["content"], *(r["messages"][1]["content"] for r in rows)
    judge = make_judge(run.options.judge, None, None, prompt_form=run.options.judge_prompt_form)
    try:
        judge.judge(instruction, first, second)  # loads the model
        started = time.perf_counter()
        judge.judge(instruction, first, second)
        judge.judge(instruction, second, first)
        return round(time.perf_counter() - started, 2)
    finally:
        judge.close()


def render_plan(plan: dict) -> str:
    b = plan["budget_settings"]
    lines = [
        f"plan: budget {plan['budget']}, base {plan['base']}, {plan['seeds']} seed(s), training in "
        f"{plan['train_processes']} process(es)",
        f"  training: {b['batch_size']} rows a micro-step x {b['grad_accum']} accumulated, {b['epochs']} epochs, "
        f"{b['max_seq_len']} tokens, lr {b['lr'] or 'default'}",
    ]
    for name, adapter in plan["adapters"].items():
        lines.append(
            f"    {name:<10} {adapter['rows']:>6} rows {adapter['steps']:>6} steps "
            f"{adapter['tokens']:>12,} tokens  (x {plan['seeds']} seed(s))"
        )
    lines.append(
        f"  evaluation: {plan['models']} models, up to {plan['max_tokens']} tokens a reply; "
        + ", ".join(f"{k} {v:,} replies" for k, v in plan["replies"].items() if v)
        + f"; ranking {plan['ranking_pairs']} instructions x {b['ranking_others']} random others a model"
    )
    lines.append(f"  win rates: {plan['judgements']:,} judgements, both orders")
    m = plan["measured"]
    training = (
        f"training {m['train_tokens_per_second']:,} tok/s"
        if m["train_tokens_per_second"]
        else f"training not timed ({m['train_not_timed']})"
    )
    lines.append(
        f"  measured here: {training}, batched generation "
        f"{m['generate_tokens_per_second']:,} tok/s"
        + (
            f", judge {m['judge_seconds_per_judgement']} s a judgement"
            if m["judge_seconds_per_judgement"] is not None
            else " (pass --judge to time the judge)"
        )
    )
    lines.append(
        "  estimated hours here: "
        + ", ".join(f"{k} {v}" for k, v in plan["hours"].items())
        + f"; total {sum(plan['hours'].values()):.1f}"
    )
    return "\n".join(lines)
