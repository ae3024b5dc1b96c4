"""The shared data folder (`../shared/data` in the development layout, or `$IJT_LOCAL_DATA`)."""

from __future__ import annotations

import os
from pathlib import Path


def _roots() -> list[Path]:
    roots = [Path(os.environ["IJT_LOCAL_DATA"])] if os.environ.get("IJT_LOCAL_DATA") else []
    repo_root = Path(__file__).resolve().parents[1]
    return roots + [repo_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]


def shared_data_path(relative: str = "") -> Path:
    """`relative` (a file or folder; "" for the folder itself) under `$IJT_LOCAL_DATA`, else under
    `shared/data` beside the repository or the working directory: the first that has it, else the
    repository's sibling path, so that a missing file is named where it was expected."""
    roots = _roots()
    return next((root / relative for root in roots if (root / relative).exists()), roots[-2] / relative)


def shared_data_file(relative: str) -> Path | None:
    """The shared file `relative`, or None when no candidate folder has it."""
    path = shared_data_path(relative)
    return path if path.is_file() else None
