"""README.md and docs/: every relative link resolves (file and #anchor), every CLI verb and subverb has an
example command line, and the measured numbers the docs cite agree with ijt_local/measured.toml."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from ijt_local.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def prose(text: str) -> str:
    """The text without fenced code blocks (a `[x](y)` in code is not a link)."""
    return FENCE.sub("", text)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links():
    for doc in DOCS:
        for target in LINK.findall(prose(doc.read_text(encoding="utf-8"))):
            if not re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                yield doc, target


@pytest.mark.parametrize(
    "doc,target", list(links()), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v
)
def test_relative_link_resolves(doc, target):
    path_part, _, anchor = target.partition("#")
    path = (doc.parent / path_part).resolve() if path_part else doc
    assert path.exists(), f"{doc.relative_to(ROOT)}: link {target}: no such file"
    if anchor and path.suffix == ".md":
        assert anchor in anchors(path), f"{doc.relative_to(ROOT)}: link {target}: no heading #{anchor}"


def verbs(group: click.Group, prefix=()):
    for name in sorted(group.list_commands(None)):
        command = group.get_command(None, name)
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from verbs(command, (*prefix, name))


def test_the_walk_finds_every_verb():
    found = {" ".join(v) for v in verbs(cli)}
    assert {"chat", "serve", "replicate", "eval winrate", "data prepare", "rules fit"} <= found


@pytest.mark.parametrize("verb", [" ".join(v) for v in verbs(cli)])
def test_every_verb_has_an_example_command_line(verb):
    """A line in a fenced block of README.md or docs/ that runs the verb (piped input allowed)."""
    example = re.compile(rf"^\s*(?:.*\|\s*)?ijt-local {re.escape(verb)}(?=\s|$)", re.M)
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text(encoding="utf-8")):
            if example.search(block):
                return
    pytest.fail(f"`ijt-local {verb}` has no example command line in README.md or docs/")


def test_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_docs_cite_the_measured_numbers():
    """The numbers code reads from measured.toml are the ones the evaluation guide shows."""
    from ijt_local.measured import ifeval_prompts_as_replies, judge_agreement, percent

    evaluation = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
    assert f"**{percent(ifeval_prompts_as_replies())}**" in evaluation
    default = judge_agreement("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "alpaca_eval_2")
    row = next(line for line in evaluation.splitlines() if line.startswith("| `alpaca_eval_2` (default) | 200 |"))
    assert f"**{default['agreement']:.3f} ± {default['agreement_se']:.3f}**" in row
    longer_wins = float(row.split("|")[4].split("±")[0])  # the table rounds 0.6775 to 0.678
    assert abs(longer_wins - default["length_baseline"]) < 0.00051
