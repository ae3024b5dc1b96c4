"""The paper's training sets, built from local files or (online) the Hugging Face datasets the paper used.

Every builder yields `{"dataset", "id", "messages"}` rows: the user turn is the task prompt, the assistant
turn the answer. The single-task formats follow the paper (Hewitt et al., 2024, appendix):

    gsm8k    user: question                 assistant: answer
    mbpp     user: text                     assistant: code            (the HF train split, tasks 601-974)
    poetry   user: Write a poem called T    assistant: the poem
    recipes  user: Recipe for T             assistant: " - item" lines, a blank line, the instructions
    chess    user: the PGN header lines     assistant: the move text
"""

from __future__ import annotations

import ast
import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..jsonl import iter_jsonl


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from: the file(s) inside a local folder, and the paper's HF dataset."""

    local_files: tuple[str, ...]  # relative to the dataset's folder; first one that exists wins
    hf_repo: str
    hf_config: str | None
    hf_split: str


def _messages(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- record -> messages, one per dataset (shared by the local and the HF path) -----------------------


def lima_rows(records: Iterable[dict]) -> Iterator[dict]:
    for index, record in enumerate(records):
        if "messages" in record:
            messages = record["messages"]
        else:  # the HF GAIR/lima layout: a list of alternating turns
            turns = record.get("conversations") or []
            roles = ("user", "assistant")
            messages = [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]
        yield {"dataset": "lima", "id": record.get("id", f"lima_{index}"), "messages": messages}


def gsm8k_rows(records: Iterable[dict]) -> Iterator[dict]:
    for index, record in enumerate(records):
        yield {
            "dataset": "gsm8k",
            "id": f"gsm8k_{index}",
            "messages": _messages(record["question"], record["answer"]),
        }


def mbpp_rows(records: Iterable[dict]) -> Iterator[dict]:
    for record in records:
        # The full local file holds every split; the paper trained on HF's train split (601-974).
        if not 601 <= int(record["task_id"]) <= 974:
            continue
        yield {
            "dataset": "mbpp",
            "id": f"mbpp_{record['task_id']}",
            "messages": _messages(record["text"], _crlf(record["code"])),
        }


def poetry_rows(records: Iterable[dict]) -> Iterator[dict]:
    for index, record in enumerate(records):
        title, poem = (record.get("poem name") or "").strip(), _crlf(record.get("content") or "").strip()
        if not title or not poem:
            continue
        yield {
            "dataset": "poetry",
            "id": f"poetry_{index}",
            "messages": _messages(f"Write a poem called {title}", poem),
        }


def _ingredients(value) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    try:
        items = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return [value] if value else []
    return [str(item) for item in items] if isinstance(items, (list, tuple)) else [str(items)]


def recipes_rows(records: Iterable[dict]) -> Iterator[dict]:
    for index, record in enumerate(records):
        title = (record.get("Title") or "").strip()
        instructions = _crlf(record.get("Instructions") or "").strip()
        if not title or not instructions:
            continue
        ingredients = "\n".join(f" - {item}" for item in _ingredients(record.get("Cleaned_Ingredients") or "[]"))
        yield {
            "dataset": "recipes",
            "id": f"recipes_{index}",
            "messages": _messages(f"Recipe for {title}", f"{ingredients}\n\n{instructions}"),
        }


_PGN_COMMENT = re.compile(r"\{[^}]*\}")
_PGN_REPEATED_MOVE_NUMBER = re.compile(r"\s\d+\.\.\.")  # "1... c5" once clock comments are gone


def parse_pgn(text: str) -> Iterator[tuple[list[str], str]]:
    """A PGN stream -> (header lines, move text) per game. Clock and other `{…}` comments are dropped."""
    headers: list[str] = []
    moves: list[str] = []

    def game():
        movetext = _PGN_COMMENT.sub(" ", " ".join(moves))
        movetext = _PGN_REPEATED_MOVE_NUMBER.sub(" ", movetext)
        return headers, " ".join(movetext.split())

    for line in _crlf(text).split("\n"):
        line = line.strip()
        if line.startswith("["):
            if moves:
                yield game()
                headers, moves = [], []
            headers.append(line)
        elif line:
            moves.append(line)
    if headers and moves:
        yield game()


def chess_rows(games: Iterable[tuple[list[str], str]]) -> Iterator[dict]:
    index = 0
    for headers, movetext in games:
        keys = {h[1:].split(" ", 1)[0] for h in headers}
        if not movetext or not {"WhiteElo", "BlackElo"} <= keys:
            continue
        yield {"dataset": "chess", "id": f"chess_{index}", "messages": _messages("\n".join(headers), movetext)}
        index += 1


# --- readers -----------------------------------------------------------------------------------------


def _read_csv(path: Path) -> Iterator[dict]:
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            yield from reader
        except csv.Error as exc:
            raise UserError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def _read_pgn(paths: list[Path]) -> Iterator[tuple[list[str], str]]:
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
        yield from parse_pgn(text)


def _require_columns(path: Path, rows: Iterator[dict], columns: set[str]) -> Iterator[dict]:
    for lineno, row in enumerate(rows, 1):
        missing = columns - row.keys()
        if missing:
            raise UserError(f"{path}: row {lineno} lacks {', '.join(sorted(missing))}")
        yield row


@dataclass(frozen=True)
class Builder:
    name: str
    source: Source
    columns: frozenset[str]  # what a local record must carry
    read_local: Callable[[list[Path]], Iterable]
    to_rows: Callable[[Iterable], Iterator[dict]]
    hf_to_records: Callable[[Iterable[dict]], Iterable] = lambda records: records


def _jsonl_reader(columns: set[str]):
    def read(paths: list[Path]):
        for path in paths:
            yield from _require_columns(path, iter_jsonl(path), columns)

    return read


def _csv_reader(columns: set[str]):
    def read(paths: list[Path]):
        for path in paths:
            yield from _require_columns(path, _read_csv(path), columns)

    return read


def _hf_pgn_records(records: Iterable[dict]) -> Iterator[tuple[list[str], str]]:
    # patrickfrank1/chess-pgn-games stores PGN text a line (or a game) per row in a `text` column.
    yield from parse_pgn("\n".join(str(r.get("text", "")) for r in records))


BUILDERS: dict[str, Builder] = {
    b.name: b
    for b in (
        Builder(
            "lima",
            Source(("lima_data.jsonl",), "GAIR/lima", None, "train"),
            frozenset({"messages"}),
            _jsonl_reader({"messages"}),
            lima_rows,
        ),
        Builder(
            "gsm8k",
            Source(("train.jsonl",), "openai/gsm8k", "main", "train"),
            frozenset({"question", "answer"}),
            _jsonl_reader({"question", "answer"}),
            gsm8k_rows,
        ),
        Builder(
            "mbpp",
            Source(("mbpp.jsonl",), "google-research-datasets/mbpp", "full", "train"),
            frozenset({"text", "code", "task_id"}),
            _jsonl_reader({"text", "code", "task_id"}),
            mbpp_rows,
        ),
        Builder(
            "poetry",
            Source(("poems.csv",), "merve/poetry", None, "train"),
            frozenset({"content", "poem name"}),
            _csv_reader({"content", "poem name"}),
            poetry_rows,
        ),
        Builder(
            "recipes",
            Source(("13k-recipes.csv",), "Hieu-Pham/kaggle_food_recipes", None, "train"),
            frozenset({"Title", "Instructions", "Cleaned_Ingredients"}),
            _csv_reader({"Title", "Instructions", "Cleaned_Ingredients"}),
            recipes_rows,
        ),
        Builder(
            "chess",
            Source(("lichess.pgn",), "patrickfrank1/chess-pgn-games", None, "train"),
            frozenset(),
            _read_pgn,
            chess_rows,
            _hf_pgn_records,
        ),
    )
}
