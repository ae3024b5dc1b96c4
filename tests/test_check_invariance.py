"""`ijt-local check invariance` as a user runs it: the probe's findings, then one reply per prompt across
widths, orders, shared prefixes and neighbours, greedy and seeded; bad input in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ijt_local.runtime.certificate import SHARED_PREFIX, certificate_prompts, check_invariance


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ijt_local", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_check_invariance_passes_and_says_what_the_probe_found(smollm_session):
    args = ("--model", "smollm2-135m-instruct", "--num-prompts", "3", "--max-tokens", "12", "--widths", "8,1,3")
    done = run_cli("check", "invariance", *args)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "3 prompts at widths 1 3 8, shuffled" in out
    assert "probe (" in out and "decode steps of" in out and "prompt calls whose rows equal a 16-row call" in out
    assert "greedy: unique replies per prompt 1 1 1: pass" in out
    assert "seeded: unique replies per prompt 1 1 1: pass" in out


@pytest.mark.slow
def test_the_certificate_counts_every_distinct_reply(gemma_session):
    # widths 1 and 3 under the probed plan agree; a one-row decode of the same prompts is not part of it
    prompts = certificate_prompts(3)
    assert sum(prompt.startswith(SHARED_PREFIX) for prompt in prompts) == 1
    checks = check_invariance(gemma_session, prompts, None, 16, widths=(1, 3))
    assert [check.mode for check in checks] == ["greedy", "seeded"]
    assert all(check.unique == [1, 1, 1] and check.passed for check in checks)
    assert all(0 <= check.fast_matches <= 3 for check in checks)


def test_bad_prompt_count_is_one_line():
    done = run_cli("check", "invariance", "--num-prompts", "0")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["Error: --num-prompts must be 1 to 8 (got 0)"]


@pytest.mark.parametrize(
    "widths, error",
    [
        ("8", "--widths needs two or more widths from 1 to 32 (got '8')"),
        ("1,64", "--widths needs two or more widths from 1 to 32 (got '1,64')"),
        ("0,4", "--widths needs two or more widths from 1 to 32 (got '0,4')"),
        ("1,two", "--widths takes numbers separated by commas (got '1,two')"),
    ],
)
def test_bad_widths_are_one_line(widths, error):
    done = run_cli("check", "invariance", "--widths", widths)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"Error: {error}"]
