"""`ijt-local eval ifeval`: generate for the IFEval prompts (cached, resumable) and score them.

Accuracy follows the published definitions: prompt level = share of prompts whose every instruction is
followed; instruction level = share of all instructions followed; strict checks the response as is,
loose also accepts it with the first and/or last line dropped and/or `*` removed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ...data.home import data_home, missing_set_message
from ...errors import UserError
from ...jsonl import iter_jsonl, write_atomic
from ...runtime.specs import RunOptions, parse_spec
from ..generations import generate_cached
from ..metrics import is_echo
from ..prompt_sets import EvalPrompt
from .checkers import CHECKERS, check_instruction, check_instruction_loose

HF_DATASET = ("google/IFEval", "ifeval_input_data.jsonl")


def default_data_path() -> Path:
    """The data home's copy (`ijt-local data fetch ifeval`), else the HF dataset."""
    local = data_home() / "ifeval" / "input_data.jsonl"
    if local.is_file():
        return local
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(HF_DATASET[0], HF_DATASET[1], repo_type="dataset"))
    except Exception as exc:
        raise UserError(
            f"{missing_set_message('ifeval', 'ifeval', data_home())}; and {HF_DATASET[0]} cannot be downloaded "
            f"({type(exc).__name__})"
        ) from None


def load_ifeval(path: str | Path, limit: int | None = None) -> list[dict]:
    path = Path(path)
    rows = []
    for index, row in enumerate(iter_jsonl(path), 1):
        where = f"{path}: row {index}"
        for key in ("prompt", "instruction_id_list", "kwargs"):
            if key not in row:
                raise UserError(f"{where}: missing {key!r}")
        if len(row["instruction_id_list"]) != len(row["kwargs"]):
            raise UserError(f"{where}: instruction_id_list and kwargs differ in length")
        unknown = [i for i in row["instruction_id_list"] if i not in CHECKERS]
        if unknown:
            raise UserError(f"{where}: unknown instruction {unknown[0]!r}")
        row.setdefault("key", index)
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise UserError(f"{path}: no IFEval prompts (empty file)")
    return rows


def score_response(row: dict, response: str) -> dict:
    ids, kwargs = row["instruction_id_list"], row["kwargs"]
    try:
        strict = [check_instruction(i, response, k) for i, k in zip(ids, kwargs)]
        loose = [check_instruction_loose(i, response, k) for i, k in zip(ids, kwargs)]
    except (TypeError, ValueError) as exc:
        raise UserError(f"IFEval prompt {row['key']}: bad kwargs ({exc})") from None
    return {
        "key": row["key"],
        "instruction_id_list": ids,
        "strict": strict,
        "loose": loose,
        "echo": is_echo(row["prompt"], response),
    }


def accuracy(scored: list[dict]) -> dict:
    """IFEval's four accuracies, plus the loose prompt-level one with echoes counted as failures.

    A reply that restates the prompt passes many IFEval checks by quoting them: the prompts themselves,
    scored as replies, pass about 30 % of all 541 loose prompt-level (measured.toml:
    ifeval_prompts_as_replies), more than gemma-3-270m's own replies.
    Base models echo, so their plain score credits the echo; `prompt_level_loose_no_echo` does not."""
    count = max(len(scored), 1)
    result = {"prompts": len(scored), "instructions": sum(len(s["strict"]) for s in scored)}
    for mode in ("strict", "loose"):
        result[f"prompt_level_{mode}"] = sum(all(s[mode]) for s in scored) / count
        flat = [ok for s in scored for ok in s[mode]]
        result[f"instruction_level_{mode}"] = sum(flat) / max(len(flat), 1)
    result["echo_rate"] = sum(bool(s.get("echo")) for s in scored) / count
    result["prompt_level_loose_no_echo"] = sum(all(s["loose"]) and not s.get("echo") for s in scored) / count
    return result


def per_instruction_type(scored: list[dict]) -> dict:
    counts = defaultdict(lambda: [0, 0])
    for s in scored:
        for instruction_id, ok in zip(s["instruction_id_list"], s["loose"]):
            counts[instruction_id][0] += ok
            counts[instruction_id][1] += 1
    return {k: {"followed_loose": v[0], "total": v[1]} for k, v in sorted(counts.items())}


def run_ifeval(
    spec_text: str,
    out_dir: str | Path,
    data: str | Path | None = None,
    limit: int | None = None,
    max_tokens: int = 512,
    seed: int = 0,
    threads: int | None = None,
    log=None,
    parallel: int | None = None,
) -> dict:
    spec = parse_spec(spec_text)
    path = Path(data) if data else default_data_path()
    rows = load_ifeval(path, limit)
    out_dir = Path(out_dir)
    prompts = [EvalPrompt(str(r["key"]), r["prompt"], [{"role": "user", "content": r["prompt"]}]) for r in rows]
    generations = generate_cached(
        spec,
        prompts,
        out_dir / "generations.jsonl",
        max_tokens=max_tokens,
        seed=seed,
        stop_at_role_tags=True,
        label="ifeval",
        options=RunOptions(threads=threads),
        log=log,
        parallel=parallel,
    )
    scored = [
        score_response(row, gen["output"]) | {"finish_reason": gen["finish_reason"]}
        for row, gen in zip(rows, generations)
    ]
    result = {
        "model": spec.describe(),
        "data": str(path),
        "settings": {"max_tokens": max_tokens, "seed": seed, "limit": limit},
        "accuracy": accuracy(scored),
        "per_instruction_type": per_instruction_type(scored),
    }
    write_atomic(out_dir / "scores.jsonl", "".join(json.dumps(s) + "\n" for s in scored))
    write_atomic(out_dir / "results.json", json.dumps(result, indent=1) + "\n")
    return result
