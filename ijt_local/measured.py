"""Numbers measured once and used by code (reports, notes beside win rates) or quoted by the docs (the
README's benchmark figures; tests/test_doc_figures.py checks the quotes), read from measured.toml in this
package. That file records, for each number, the command that measured it and the commit and date; a
remeasurement changes it there and nowhere else."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PROVENANCE = ("command", "commit", "date", "data")  # entries that say where a number came from


@lru_cache(maxsize=1)
def measured() -> dict:
    """The whole of measured.toml."""
    return tomllib.loads(files("ijt_local").joinpath("measured.toml").read_text(encoding="utf-8"))


def ifeval_prompts_as_replies() -> float:
    """Loose prompt-level IFEval accuracy of the 541 prompts scored as their own replies (0.298)."""
    return measured()["ifeval_prompts_as_replies"]["prompt_level_loose"]


def judge_agreement(judge_file: str, form: str) -> dict | None:
    """A judge's measured agreement with GPT-4 for one prompt form, without its provenance fields (None if
    never measured): agreement, agreement_se, length_baseline, difference_se, pairs."""
    entry = measured()["judge_agreement"].get(judge_file, {}).get(form)
    return None if entry is None else {k: v for k, v in entry.items() if k not in PROVENANCE}


def percent(value: float) -> str:
    """0.298 -> '29.8 %', as the docs and reports write a share."""
    return f"{value * 100:.1f} %"
