"""JSONL reading with file:line errors, and append-only writing that survives interruption."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError


def read_jsonl(path: str | Path) -> list[dict]:
    return list(iter_jsonl(path))


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    for _, row in iter_numbered_jsonl(path):
        yield row


def iter_numbered_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line raises UserError naming file:line."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        for lineno, line in _lines(path, handle):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def _lines(path: Path, handle) -> Iterator[tuple[int, str]]:
    for lineno, raw in enumerate(handle, 1):
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{path}:{lineno}: not UTF-8 text") from None


def read_completed_rows(path: str | Path) -> list[dict]:
    """Rows already in an output file; a torn last line (killed mid-write) is dropped and truncated away."""
    path = Path(path)
    if not path.exists():
        return []
    rows, good_bytes = [], 0
    with path.open("rb") as handle:
        for raw in handle:
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            if not raw.endswith(b"\n"):
                break
            rows.append(row)
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return rows


class JsonlAppender:
    """Appends one row per call and flushes it to disk, so an interrupted run loses nothing finished."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._handle = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def write(self, row: dict) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_atomic(path: str | Path, text: str) -> None:
    """Write a whole text file through a temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
