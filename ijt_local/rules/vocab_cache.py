"""The rule expert's view of a tokenizer (every token's text and start-rule word class), cached on disk.

Reading 262,144 pieces out of llama.cpp and classifying them costs about a CPU-second, which `--poe` paid
at every start. Both depend only on the model file, so they are written once to
`~/.cache/ijt-local/vocab/` under a key of the file's identity (resolved path, size, modification time)
and the vocabulary's size and EOS id. A file that changes gets a new key; an unreadable or inconsistent
cache entry is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..jsonl import write_atomic
from ..models import cache_dir
from .expert import Vocabulary

FORMAT = 1


def model_identity(path: Path, n_vocab: int, eos_id: int) -> dict:
    stat = path.stat()
    return {
        "format": FORMAT,
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "n_vocab": n_vocab,
        "eos_id": eos_id,
    }


def cache_file(identity: dict) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / "vocab" / f"{key}.json"


def load_vocabulary(path: Path, n_vocab: int, eos_id: int, read_pieces: Callable[[], list[str]]) -> Vocabulary:
    """The Vocabulary of the model at `path`: from the cache when it holds this file's, else built with
    `read_pieces()` and cached."""
    identity = model_identity(path, n_vocab, eos_id)
    where = cache_file(identity)
    cached = _read(where, identity)
    if cached is not None:
        return cached
    vocabulary = Vocabulary(read_pieces(), eos_id)
    record = {"identity": identity, "pieces": vocabulary.pieces, "word_classes": vocabulary.word_classes}
    try:
        write_atomic(where, json.dumps(record, ensure_ascii=False))
    except UserError:
        pass  # a read-only cache costs the rebuild next time, nothing else
    return vocabulary


def _read(where: Path, identity: dict) -> Vocabulary | None:
    try:
        record = json.loads(where.read_text(encoding="utf-8"))
        pieces, classes = record["pieces"], record["word_classes"]
        if record["identity"] != identity or len(pieces) != identity["n_vocab"]:
            return None
        if not isinstance(classes, str) or not all(isinstance(piece, str) for piece in pieces):
            return None
        return Vocabulary(pieces, identity["eos_id"], classes)
    except (OSError, ValueError, KeyError, TypeError):
        return None
