"""Files in the data home (ijt_local.data.home) by their path in its layout, for verbs and scripts that ask
for one file (e.g. "val/val.jsonl"). No other place is guessed: in a development checkout the home is
`../shared/data` because `$IJT_LOCAL_DATA` says so."""

from __future__ import annotations

from pathlib import Path

from .data.home import data_home


def shared_data_path(relative: str = "") -> Path:
    """`relative` (a file or folder; "" for the data home itself) under the data home, there or not."""
    return data_home() / relative


def shared_data_file(relative: str) -> Path | None:
    """The file `relative` in the data home, or None when it is not there."""
    path = shared_data_path(relative)
    return path if path.is_file() else None
