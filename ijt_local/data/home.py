"""The data home: the folder holding the paper's data sets on this machine, and the names verbs take for them.

`$IJT_LOCAL_DATA` if set, else `$IJT_LOCAL_HOME/data` (`~/.cache/ijt-local/data`). Its layout is one folder a
set (lima/, val/, alpaca_eval/, ifeval/, gsm8k/, mbpp/, poetry/, recipes/, chess/), as `ijt-local data fetch`
fills it. Nothing here guesses other places: a development checkout points IJT_LOCAL_DATA at its copy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import UserError
from . import sets as registry

DATA_ENV = "IJT_LOCAL_DATA"

# The names each kind of option takes besides a path (the first file of a set, or a named extra file).
PROMPT_NAMES = ("val", "alpaca_eval", "ifeval")  # instructions to answer: compare --input, generate --input
REFERENCE_ANSWER_NAMES = ("gpt4", "gpt4_1106_preview")  # AlpacaEval's answers of a strong model
RANKING_NAMES = ("lima",)  # instruction-response pairs: eval ranking --data


def data_home() -> Path:
    explicit = os.environ.get(DATA_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    from ..models import cache_dir

    return cache_dir() / "data"


def describe_home(home: Path) -> str:
    origin = f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "$IJT_LOCAL_HOME/data"
    return f"{home} ({origin})"


def missing_set_message(name: str, set_name: str, home: Path) -> str:
    return (
        f"{name}: not in the data home {home} (run: ijt-local data fetch {set_name}, "
        f"or set {DATA_ENV} to a folder that has it)"
    )


def data_file(value: str | Path, names: Iterable[str]) -> Path:
    """`value` as a data file: one of `names` (a file of a set in the data home, which must be there) or
    a path, returned as given. A name wins over a file of that name in the working directory (`./val`)."""
    if str(value) not in tuple(names):
        return Path(value)
    data_set, file = registry.named_files()[str(value)]
    home = data_home()
    path = home / file.path
    if not path.is_file():
        raise UserError(missing_set_message(str(value), data_set.name, home))
    return path


def shared_data_path(relative: str = "") -> Path:
    """`relative` (a file or folder; "" for the data home itself) under the data home, there or not: for
    verbs and scripts that ask for one file by its path in the home's layout (e.g. "val/val.jsonl")."""
    return data_home() / relative


def shared_data_file(relative: str) -> Path | None:
    """The file `relative` in the data home, or None when it is not there."""
    path = shared_data_path(relative)
    return path if path.is_file() else None
