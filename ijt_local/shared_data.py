"""The shared data folder (`../shared/data` in the development layout, or `$IJT_LOCAL_DATA`)."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_file(relative: str) -> Path | None:
    """`$IJT_LOCAL_DATA/relative`, else `shared/data/relative` beside the repository or the working
    directory; None when none of them exists."""
    candidates = [Path(os.environ["IJT_LOCAL_DATA"]) / relative] if os.environ.get("IJT_LOCAL_DATA") else []
    repo_root = Path(__file__).resolve().parents[1]
    candidates += [repo_root.parent / "shared" / "data" / relative, Path.cwd().parent / "shared" / "data" / relative]
    return next((path for path in candidates if path.is_file()), None)
