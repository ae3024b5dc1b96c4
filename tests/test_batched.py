"""Batched generation on the real embedded GGUFs: the same replies as one-at-a-time exact decoding, per-prompt
sampling, stop handling, slot reuse, bad input, and `generate --input --parallel` as a user runs it
(width and order invariance: tests/test_batch_invariance.py)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_runtime import ask, val_instructions

from ijt_local.cli import cli
from ijt_local.errors import UserError
from ijt_local.rules.expert import load_rules
from ijt_local.runtime.batch import generate_all
from ijt_local.runtime.session import SamplingParams


def both_ways(session, conversations, width, **options):
    single = [g for _, g in generate_all(session, conversations, 1, exact=True, **options)]
    batched = dict(generate_all(session, conversations, width, **options))
    assert sorted(batched) == list(range(len(conversations)))
    return single, [batched[i] for i in range(len(conversations))]


@pytest.mark.slow
@pytest.mark.parametrize("poe", [False, True], ids=["plain", "poe"])
def test_greedy_batched_equals_single_stream(gemma_session, poe):
    # Five prompts through two slots also exercise freeing and reusing a slot.
    conversations = [ask(text) for text in val_instructions(5)]
    rules = load_rules() if poe else None
    single, batched = both_ways(gemma_session, conversations, 2, max_tokens=40, rules=rules)
    for one, many in zip(single, batched):
        assert many.tokens == one.tokens
        assert (many.text, many.finish_reason) == (one.text, one.finish_reason)


@pytest.mark.slow
def test_sampling_is_seeded_per_prompt(smollm_session):
    conversations = [ask("Tell me a story."), ask("Describe the sea."), ask("Tell me a story.")]
    sampling = SamplingParams(temperature=0.9, top_p=0.95, top_k=50, seed=3)
    single, batched = both_ways(smollm_session, conversations, 2, max_tokens=24, sampling=sampling)
    assert [g.tokens for g in batched] == [g.tokens for g in single]
    assert batched[0].tokens == batched[2].tokens  # same prompt, same seed: same text whatever its slot


@pytest.mark.slow
@pytest.mark.parametrize("width", [8, 16, 32])
def test_a_wide_batch_finishes_every_prompt_with_its_own_stop(smollm_session, width):
    prompts = [
        ask("What is the capital of France?"),
        ask("Write a long essay about rivers."),
        ask("Name a color."),
        ask("Count from one to fifty in words."),
    ]
    conversations = prompts * 8
    budgets = dict(generate_all(smollm_session, conversations, width, max_tokens=16))
    assert sorted(budgets) == list(range(32))
    assert "Paris" in budgets[0].text and budgets[0].finish_reason == "stop"
    assert budgets[1].finish_reason == "length" and budgets[1].n_tokens == 16
    # each prompt's reply is the one it gets alone, wherever it sits among the 32 and beside whichever others
    alone = [g.tokens for _, g in generate_all(smollm_session, prompts, 1, exact=True, max_tokens=16)]
    assert [budgets[i].tokens for i in range(32)] == alone * 8


@pytest.mark.slow
def test_role_tag_ends_a_batched_reply(gemma_session):
    messages = [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "Say hi."},
    ]
    replies = dict(generate_all(gemma_session, [messages, messages], 2, max_tokens=80))
    for generation in replies.values():
        assert "<|" not in generation.text and generation.finish_reason == "stop"


@pytest.mark.slow
def test_a_prompt_too_long_for_the_context_fails_before_decoding(smollm_session):
    too_long = ask("word " * 3000)
    with pytest.raises(UserError, match=r"prompt 2 of 2: prompt of \d+ tokens does not fit"):
        list(generate_all(smollm_session, [ask("Hi."), too_long], 2, max_tokens=8))


def test_parallel_below_one_is_refused_in_one_line(tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"instruction": "Name a color."}) + "\n")
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            "--model",
            "smollm2-135m-instruct",
            "--input",
            str(inputs),
            "--out",
            str(tmp_path / "out.jsonl"),
            "--parallel",
            "0",
        ],
    )
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == "Error: --parallel must be at least 1 (got 0)"


@pytest.mark.slow
def test_generate_file_in_parallel_resumes_and_keeps_input_order(tmp_path):
    questions = ["Name a color.", "Name a fruit.", "Name an animal.", "Name a city.", "Name a river."]
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"instruction": q}) + "\n" for q in questions))
    out = tmp_path / "out.jsonl"
    # an interrupted parallel run: rows were appended as they finished, out of order
    finished = [
        {
            "instruction": q,
            "output": "(earlier)",
            "generator": "smollm2-135m-instruct",
            "finish_reason": "stop",
            "n_tokens": 1,
        }
        for q in (questions[3], questions[1])
    ]
    out.write_text("".join(json.dumps(row) + "\n" for row in finished))
    result = CliRunner().invoke(
        cli,
        [
            "generate",
            "--model",
            "smollm2-135m-instruct",
            "--input",
            str(inputs),
            "--out",
            str(out),
            "--max-tokens",
            "12",
            "--parallel",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["instruction"] for row in rows] == questions
    assert [row["output"] == "(earlier)" for row in rows] == [False, True, False, True, False]


@pytest.mark.slow
def test_running_sequences_stay_one_run_of_ids_as_replies_finish(smollm_session, monkeypatch):
    # llama.cpp splits a step whose sequence ids are not 0..n-1 in order into one compute pass per run of
    # ids; when the short first reply ends, the last sequence moves down into its slot, KV cells and all.
    from ijt_local.runtime.batch import BatchDecoder

    steps = []
    decode = BatchDecoder._decode

    def recording(self, rows):
        if len({seq_id for _, _, seq_id, _ in rows}) == len(rows):  # one token per sequence: a step
            steps.append([seq_id for _, _, seq_id, _ in rows[: len(self.running)]])  # the pads come after
            assert len(rows) == self.plan.step_rows(len(self.running))  # the probed plan's rows (rows.py)
        decode(self, rows)

    monkeypatch.setattr(BatchDecoder, "_decode", recording)
    conversations = [
        ask("What is the capital of France?"),
        ask("Write a long essay about rivers."),
        ask("Count to fifty in words."),
    ]
    single, batched = both_ways(smollm_session, conversations, 3, max_tokens=24)
    assert [g.tokens for g in batched] == [g.tokens for g in single]
    assert batched[0].n_tokens < 24 and batched[1].n_tokens == batched[2].n_tokens == 24
    assert any(len(a) == 3 and len(b) == 2 for a, b in zip(steps, steps[1:]))  # a reply ended mid-run
    assert all(ids == list(range(len(ids))) for ids in steps)
