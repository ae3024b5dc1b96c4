"""The Python API's page (docs/python-api.md): every example on it runs, and what it asserts holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ijt_local

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


def test_the_page_has_examples_and_the_package_exports_the_api():
    assert len(EXAMPLES) >= 4
    assert set(ijt_local.__all__) >= {"load", "generate", "batch_generate", "with_rules", "score"}
    assert callable(ijt_local.load)
    with pytest.raises(AttributeError):
        ijt_local.no_such_thing  # noqa: B018


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[f"example{n + 1}" for n in range(len(EXAMPLES))])
def test_example_runs(example, capsys):
    exec(compile(example, str(PAGE), "exec"), {})
    printed = capsys.readouterr().out
    assert printed.strip(), "every example prints what it made"


@pytest.mark.slow
def test_rules_change_the_reply_and_with_rules_loads_nothing():
    with ijt_local.load("default") as base:
        ruled = ijt_local.with_rules(base, "eos,uniform,diversity")
        assert ruled.session is base.session and base.rules is None
        assert ruled.rules.enabled == frozenset({"eos", "uniform", "diversity"})
        question = "Write one sentence about the sea."
        assert ijt_local.generate(base, question, max_tokens=40) != ijt_local.generate(ruled, question, max_tokens=40)
        assert ijt_local.with_rules(ruled, None).rules is None
