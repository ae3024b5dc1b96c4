"""Instruction files for evaluation: JSONL rows with `instruction`, `prompt`, or `messages`, or multi-turn
rows `{"turns": [first, second, ...]}` (user messages the model answers in order)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..jsonl import iter_jsonl
from ..prompts import instruction_messages, parse_turns


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    instruction: str  # the last user turn, for metrics and the report
    messages: list  # what the model is given (a trailing assistant turn removed)
    reference: str | None = None  # the dataset's own response, when it has one
    row: dict | None = None
    turns: tuple[str, ...] | None = None  # a multi-turn row's user messages (then `instruction` is the last)


def _nonblank_line_numbers(path: Path) -> list[int]:
    with path.open(encoding="utf-8") as handle:
        return [n for n, line in enumerate(handle, 1) if line.strip()]


def load_prompts(path: str | Path, limit: int | None = None) -> list[EvalPrompt]:
    """Read an instruction file; one clear `file:line` error for any row that is not an instruction."""
    path = Path(path)
    rows = list(iter_jsonl(path))  # raises file:line on malformed JSON
    if not rows:
        raise UserError(f"{path}: no instructions (empty file)")
    line_numbers = _nonblank_line_numbers(path)
    prompts, seen = [], set()
    for lineno, row in zip(line_numbers, rows):
        try:
            turns = parse_turns(row)
            messages = instruction_messages(row) if turns is None else [{"role": "user", "content": turns[0]}]
        except ValueError as exc:
            raise UserError(f"{path}:{lineno}: {exc}") from None
        reference = None
        if messages and messages[-1]["role"] == "assistant":
            reference = messages[-1]["content"]
            messages = messages[:-1]
        users = [m["content"] for m in messages if m["role"] == "user"]
        instruction = turns[-1] if turns is not None else (users[-1] if users else "")
        if not str(instruction).strip():
            raise UserError(f"{path}:{lineno}: no user instruction")
        key = row.get("id", row.get("key", len(prompts)))
        key = str(key)
        if key in seen:
            raise UserError(f"{path}:{lineno}: duplicate id {key!r}")
        seen.add(key)
        prompts.append(
            EvalPrompt(key, str(instruction), messages, reference, row, tuple(turns) if turns is not None else None)
        )
        if limit is not None and len(prompts) >= limit:
            break
    return prompts


def load_outputs(path: str | Path) -> dict[str, str]:
    """instruction -> output from an AlpacaEval-style JSONL (instruction/output, or messages)."""
    table = {}
    for prompt in load_prompts(path):
        output = prompt.row.get("output", prompt.reference)
        if output is None:
            raise UserError(f"{path}: row {prompt.id} has no output")
        table[prompt.instruction] = str(output)
    return table
