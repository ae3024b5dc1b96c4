"""Training rows -> token ids with loss labels on the assistant responses only.

A conversation is tokenized piece by piece, each piece as the runtime will see it: everything up to and
including `<|assistant|>\\n` as one string (exactly the prompt llama.cpp tokenizes at generation time),
then the response, then the EOS id. Labels are the response ids and EOS; every other label is -100.
Tokenizing the pieces apart (not the joined text) keeps the boundary exact: decoding the labelled ids
gives back `{response}{eos}` character for character.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ijt_local.errors import UserError
from ijt_local.jsonl import iter_numbered_jsonl
from ijt_local.prompts import TULU, ChatTemplate, instruction_messages

IGNORE = -100


@dataclass
class TokenizedSet:
    examples: list[dict]  # {"input_ids": [...], "labels": [...]}
    rows: int  # rows read
    truncated: int  # rows cut at max_seq_len that kept some response tokens
    dropped: int  # rows with no response token left within max_seq_len
    sha256: str  # of the file's bytes
    path: str = ""
    stats: dict = field(default_factory=dict)


def read_rows(path: str | Path) -> tuple[list[tuple[int, dict]], str]:
    """(line number, row) pairs and the file's sha256; malformed input raises UserError naming file:line."""
    path = Path(path)
    rows = list(iter_numbered_jsonl(path))
    if not rows:
        raise UserError(f"{path}: no training rows (the file is empty)")
    return rows, hashlib.sha256(path.read_bytes()).hexdigest()


def row_messages(path: Path, lineno: int, row: dict) -> list[dict]:
    try:
        messages = instruction_messages(row)
    except ValueError as exc:
        raise UserError(f"{path}:{lineno}: {exc}") from None
    for message in messages:
        if message["role"] not in ("user", "assistant", "system") or not isinstance(message["content"], str):
            raise UserError(f"{path}:{lineno}: bad message {json.dumps(message)[:80]}")
    if not any(m["role"] == "assistant" and m["content"] for m in messages):
        raise UserError(f"{path}:{lineno}: no assistant turn to train on")
    return messages


def special_prefix(tokenizer) -> list[int]:
    """What the tokenizer puts before a text on its own (gemma: <bos>; SmolLM2: nothing)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    cut = len(full) - len(plain)
    return full[:cut] if cut > 0 and full[cut:] == plain else []


def tokenize_conversation(
    messages: list[dict], tokenizer, template: ChatTemplate = TULU, prefix: list[int] | None = None
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for a whole conversation: every assistant turn is labelled."""
    if tokenizer.eos_token_id is None:
        raise UserError("the base model's tokenizer has no EOS token")
    ids = list(special_prefix(tokenizer) if prefix is None else prefix)
    labels = [IGNORE] * len(ids)
    pending = ""  # unlabelled text waiting to be tokenized as one piece

    def flush():
        nonlocal pending
        if pending:
            piece = tokenizer(pending, add_special_tokens=False)["input_ids"]
            ids.extend(piece)
            labels.extend([IGNORE] * len(piece))
            pending = ""

    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            pending += template.assistant_prefix
            flush()
            piece = tokenizer(message["content"], add_special_tokens=False)["input_ids"]
            piece.append(tokenizer.eos_token_id)
            ids.extend(piece)
            labels.extend(piece)
            if index < len(messages) - 1:
                pending += template.assistant_suffix
        else:
            pending += f"{template.user_prefix}{message['content']}{template.user_suffix}"
    # Trailing user turns carry no labels; they are dropped.
    return ids, labels


def tokenize_file(path: str | Path, tokenizer, max_seq_len: int, template: ChatTemplate = TULU) -> TokenizedSet:
    """A JSONL training file (`messages`, `instruction`/`output` or `prompt`/`completion` rows) ->
    tokenized examples cut at `max_seq_len`. Rows whose response starts beyond the cut are dropped."""
    path = Path(path)
    if max_seq_len < 8:
        raise UserError(f"--max-seq-len {max_seq_len} is too short (at least 8)")
    rows, sha256 = read_rows(path)
    prefix = special_prefix(tokenizer)
    examples, truncated, dropped = [], 0, 0
    total_tokens = labelled = 0
    for lineno, row in rows:
        ids, labels = tokenize_conversation(row_messages(path, lineno, row), tokenizer, template, prefix)
        cut = len(ids) > max_seq_len
        ids, labels = ids[:max_seq_len], labels[:max_seq_len]
        # The first token is never predicted, so a label only counts from position 1 on.
        if all(label == IGNORE for label in labels[1:]):
            dropped += 1
            continue
        truncated += cut
        examples.append({"input_ids": ids, "labels": labels})
        total_tokens += len(ids)
        labelled += sum(label != IGNORE for label in labels[1:])
    if not examples:
        raise UserError(f"{path}: --max-seq-len {max_seq_len} is too short: no row keeps a response token within it")
    stats = {
        "rows": len(rows),
        "examples": len(examples),
        "tokens": total_tokens,
        "labelled_tokens": labelled,
        "truncated": truncated,
        "dropped": dropped,
    }
    return TokenizedSet(examples, len(rows), truncated, dropped, sha256, str(path), stats)
