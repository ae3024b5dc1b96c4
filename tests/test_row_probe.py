"""The row plan comes from a probe of the model file on this machine (row_probe.py), not from constants.

The slow tests run the real probe on the two embedded GGUFs, print what it derives, check the plan against
rows the probe never saw (another text's tokens), and check that the batched decoder pads to that plan."""

from __future__ import annotations

import json

import pytest

from ijt_local.runtime import row_probe
from ijt_local.runtime.batch import batch_decoder
from ijt_local.runtime.rows import RowPlan

OTHER_TEXT = "Seven wise owls argued all night about whether the moon tastes of cheese or of chalk and dust."


def fake_steps(regime, rows=32, alone=None):
    """Step hashes where `regime(n, i, token)` names the kernel that computes row i of an n-row step (and
    `alone(n)`, if given, a lone step's row, whose step has one logits row)."""
    token = row_probe._token_index
    alone = alone or (lambda n: regime(n, 0, token(n, 0)))
    steps = {("alone", n): f"{alone(n)}/{token(n, 0)}" for n in range(1, rows + 1)}
    for n in range(1, rows + 1):
        for i in range(n):
            steps[(n, i)] = f"{regime(n, i, token(n, i))}/{token(n, i)}"
    return steps


def test_derives_groups_of_four_from_at_least_eight_from_repacked_like_regimes():
    # 1-3 rows one kernel, 4-7 another, 8+ a third; in calls of 8+ the trailing n % 4 rows go one by one
    def regime(n, i, token):
        if n < 4:
            return "small"
        if n < 8:
            return "mid"
        return "tail" if i >= n - n % 4 else "gemm"

    assert row_probe._step_plans(fake_steps(regime), 32) == [(4, 8, False), (4, 8, True)]


def test_derives_no_padding_where_every_count_agrees_and_none_where_nothing_does():
    assert row_probe._step_plans(fake_steps(lambda n, i, t: "same"), 32) == [(1, 1, False), (1, 1, True)]
    assert row_probe._step_plans(fake_steps(lambda n, i, t: f"kernel{n}"), 32) == []


def test_where_the_number_of_logits_rows_matters_pads_want_logits():
    # as gemma's f16 file here: a step with one logits row differs from any with more, and 2+ rows agree
    steps = fake_steps(lambda n, i, t: "one" if n == 1 else "many", alone=lambda n: "one")
    assert row_probe._step_plans(steps, 32) == [(1, 2, True)]
    assert RowPlan(1, 2, pad_logits=True).step_outputs(1) == 2 and RowPlan(4, 8).step_outputs(3) == 3


def test_a_token_that_hides_the_difference_does_not_decide_the_plan():
    # rows of token 0 agree everywhere (as gemma's " deep" does); token 3's rows show the 1-7 / 8+ split
    def regime(n, i, token):
        return "same" if token == 0 else ("small" if n < 8 else "big")

    assert row_probe._step_plans(fake_steps(regime), 32)[0] == (1, 8, False)


def test_prompt_plan_is_the_smallest_minimum_that_agrees():
    rows = 24
    prompts = {
        (text, (k,), j): ("a" if k < 4 else "b" if k < 8 else "c") + f"{text}{j}"
        for text in range(2)
        for k in range(1, rows + 1)
        for j in range(k)
    }
    assert row_probe._prompt_plan(prompts, rows) == (1, 8)
    assert row_probe._prompt_plan({key: f"{key[0]}{key[2]}" for key in prompts}, rows) == (1, 1)
    # a prompt finished by a one-row call (its prefix cached) attends as a decode step does: it differs
    same = {key: f"{key[0]}{key[2]}" for key in prompts}
    same |= {(text, ("last", k - 2, 2), k - 1): f"{text}{k - 1}" for text in range(2) for k in range(3, rows + 1)}
    split = {(text, ("last", k - 1, 1), k - 1): f"one-row{text}{k}" for text in range(2) for k in range(2, rows + 1)}
    assert row_probe._prompt_plan(same | split, rows) == (1, 2)


def step_hashes(session, plan: RowPlan, counts) -> set[str]:
    """One token of a text the probe never used, decoded as row 0 of steps of each count."""
    tokens = (session.llama.tokenize(OTHER_TEXT, add_bos=True, special=False) * 3)[:40]
    context = session.llama.new_context(64 * 33, 33, session.threads)
    try:
        context.decode([(t, p, 0, False) for p, t in enumerate(tokens[: row_probe.PREFIX])])
        hashes = set()
        for n in counts:
            for token_index in range(row_probe.TOKENS):
                rows = [(tokens[row_probe.PREFIX + token_index], row_probe.PREFIX, 1, True)]
                context.copy(0, 1)
                rows += [(1000 + 7 * i, 0, i + 1, False) for i in range(1, n)]
                context.decode(rows)
                hashes.add((token_index, row_probe._digest(context.logits_row(0))))
                for seq_id in range(1, n + 1):
                    context.remove(seq_id)
        return hashes
    finally:
        context.close()


@pytest.mark.slow
def test_the_probe_derives_each_models_row_plan(real_session, capsys):
    result = row_probe.probe(real_session.llama, real_session.threads)
    plan = result.plan
    with capsys.disabled():
        print(f"\n{real_session.model.path.name}: {plan} ({result.seconds:.1f} s)")
        print("  steps like a 32-row step:", result.steps_like_widest, " prompt calls:", result.prompts_like_widest)
    assert plan.invariant
    assert result.seconds < 120
    probed = row_probe.step_counts(row_probe.PROBE_ROWS)
    allowed = [n for n in probed if n >= plan.step_min and n % plan.step_group == 0]
    assert allowed and all(n in result.steps_like_widest for n in allowed)
    # the plan holds for rows the probe never saw: a lone step and steps of 3, 9 and 30 sequences, padded
    counts = sorted({plan.step_rows(n) for n in (1, 3, 9, 30)})
    per_token = step_hashes(real_session, plan, counts)
    assert len(per_token) == row_probe.TOKENS  # one hash per token, whatever the row count
    if plan.step_min > 1:  # and the padding is needed: a one-row step differs for some token
        assert step_hashes(real_session, plan, [1]) != step_hashes(real_session, plan, [plan.step_min])
    # the batched decoder pads to the plan the session probed
    assert batch_decoder(real_session, 3).plan == real_session.row_plan


@pytest.mark.slow
def test_the_probe_is_cached_per_file_and_a_damaged_entry_is_probed_again(smollm_session, tmp_path, monkeypatch):
    monkeypatch.setenv("IJT_LOCAL_HOME", str(tmp_path))
    first = row_probe.load_or_probe(smollm_session.llama, smollm_session.threads)
    again = row_probe.load_or_probe(smollm_session.llama, smollm_session.threads)
    assert not first.cached and again.cached and again.plan == first.plan
    (entry,) = (tmp_path / "rows").glob("*.json")
    assert json.loads(entry.read_text())["identity"]["system"]  # keyed by the build's CPU features
    entry.write_text("{not json")
    rebuilt = row_probe.load_or_probe(smollm_session.llama, smollm_session.threads)
    assert not rebuilt.cached and rebuilt.plan == first.plan
    assert row_probe.load_or_probe(smollm_session.llama, smollm_session.threads).cached
