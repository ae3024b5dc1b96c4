"""`ijt-local data prepare`: build one of the paper's training sets as `{"dataset","id","messages"}` JSONL."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from ..errors import UserError
from ..jsonl import write_atomic
from .builders import BUILDERS, Builder

VARIANTS = ("instruction", "response")


def response_only(row: dict) -> dict:
    """Response tuning: the same row with every user (and system) turn removed."""
    messages = [m for m in row["messages"] if m["role"] == "assistant"]
    return {**row, "messages": messages, "variant": "response"}


def local_files(builder: Builder, path: Path) -> list[Path]:
    """`--from` may name the file itself, the dataset's folder, or the folder holding all datasets."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    for folder in (path, path / builder.name):
        for name in builder.source.local_files:
            if (folder / name).is_file():
                return [folder / name]
    wanted = " or ".join(builder.source.local_files)
    raise UserError(f"{path}: no {wanted} here or in {path / builder.name}")


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_hf_records(builder: Builder) -> Iterable[dict]:
    source = builder.source
    try:
        import datasets
    except ImportError:
        raise UserError(
            f"{builder.name}: loading {source.hf_repo} needs the `datasets` package (pip install datasets); "
            f"or run: ijt-local data fetch {builder.name}, or pass --from PATH"
        ) from None
    online = hub_reachable()
    if not online:
        # Without a network, `datasets` retries for ~25 s before failing; in offline mode it answers from
        # its cache at once, or fails at once. Both libraries read the switch into module constants.
        from huggingface_hub import constants

        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
        constants.HF_HUB_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(source.hf_repo, source.hf_config, split=source.hf_split)
    except Exception as exc:  # offline, gated, renamed: all end the same way for the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not online:
            raise UserError(
                f"{builder.name}: cannot load {source.hf_repo}: the Hugging Face hub is unreachable and the "
                f"dataset is not in the local cache; run: ijt-local data fetch {builder.name}, or pass --from PATH"
            ) from None
        raise UserError(
            f"{builder.name}: cannot load {source.hf_repo} from the Hugging Face hub ({reason}); "
            f"offline? run: ijt-local data fetch {builder.name}, or pass --from PATH"
        ) from None


def home_folder(builder: Builder) -> Path | None:
    """The set's folder in the data home, when it holds the builder's file."""
    from .home import data_home

    folder = data_home() / builder.name
    return folder if any((folder / name).is_file() for name in builder.source.local_files) else None


def source_of(name: str, from_path: str | Path | None) -> str:
    """Where `build_rows(name, from_path)` reads: the path, the data home's folder, or the HF dataset."""
    if from_path is not None:
        return str(from_path)
    builder = BUILDERS[name]
    return str(home_folder(builder) or f"the Hugging Face dataset {builder.source.hf_repo}")


def build_rows(
    name: str, from_path: str | Path | None = None, limit: int | None = 1000, variant: str = "instruction"
) -> Iterator[dict]:
    if name not in BUILDERS:
        raise UserError(f"{name}: unknown dataset (known: {', '.join(BUILDERS)})")
    if variant not in VARIANTS:
        raise UserError(f"{variant}: unknown variant (known: {', '.join(VARIANTS)})")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    builder = BUILDERS[name]
    if from_path is None:
        from_path = home_folder(builder)
    if from_path is not None:
        records = builder.read_local(local_files(builder, Path(from_path)))
    else:
        records = builder.hf_to_records(load_hf_records(builder))
    rows = (row for row in builder.to_rows(records) if any(m["role"] == "assistant" for m in row["messages"]))
    if variant == "response":
        rows = (response_only(row) for row in rows)
    return islice(rows, limit)


def prepare(
    name: str,
    out: str | Path,
    from_path: str | Path | None = None,
    limit: int | None = 1000,
    variant: str = "instruction",
) -> int:
    """Write the dataset to `out` (temp file + rename); returns the number of rows."""
    rows = list(build_rows(name, from_path, limit, variant))
    if not rows:
        raise UserError(f"{name}: no usable rows in {source_of(name, from_path)}")
    write_atomic(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return len(rows)
