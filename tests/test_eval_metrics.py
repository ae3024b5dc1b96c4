"""Behaviour metrics, spec parsing and prompt loading: pure functions, no model."""

import json

import pytest

from ijt_local.errors import UserError
from ijt_local.eval.metrics import (
    METRIC_NAMES,
    behaviour_metrics,
    echo_overlap,
    find_role_tag,
    is_echo,
    repetition,
)
from ijt_local.eval.prompt_sets import load_prompts
from ijt_local.runtime.specs import parse_spec


def row(output, instruction="Give three tips for staying healthy.", finish="stop", tag=None, n=10):
    return {"instruction": instruction, "output": output, "finish_reason": finish, "role_tag": tag, "n_tokens": n}


def test_echo_is_most_of_the_instruction_restated():
    inst = "Give three tips for staying healthy."
    assert is_echo(inst, "Give three tips for staying healthy. Give three tips for staying healthy.")
    assert is_echo(inst, "<|user|>\ngive three tips for staying healthy\n<|assistant|>")
    assert not is_echo(inst, "1. Drink water. 2. Sleep well. 3. Walk every day, it keeps you healthy.")
    assert not is_echo("What is the capital city of Japan?", "The capital city of Japan is Tokyo.")
    assert echo_overlap(inst, "") == 0.0
    assert echo_overlap("Hi", "hi there") == 1.0  # shorter than an n-gram: the whole instruction


def test_repetition_share_of_repeated_4grams():
    assert repetition("one two three four five six") == 0.0
    looped = "I like cats . " * 10
    assert repetition(looped) > 0.8
    assert repetition("") == 0.0


def test_role_tags_found_in_either_template():
    assert find_role_tag("fine\n<|user|>\nmore") == "<|user|>"
    assert find_role_tag("a <|im_start|>user b <|user|>") == "<|im_start|>"
    assert find_role_tag("no tags <|here") is None
    assert find_role_tag("Okay!\n<|admin|>\nhi") == "<|admin|>"  # an invented role is a leak too
    assert find_role_tag("a <| b |> c") is None


def test_behaviour_metrics_on_hand_made_rows():
    rows = [
        row("1. Drink water. 2. Sleep. 3. Walk.", n=12),
        row("Give three tips for staying healthy.\n<|user|>\nWhat else?", finish="length", n=40),
        row("Sure, eat well.", tag="<|user|>", n=8),
        row("la la la la la la la la la la la", finish="length", n=20),
    ]
    m = behaviour_metrics(rows)
    assert list(m) == list(METRIC_NAMES)
    assert m["stop_rate"] == 0.5
    assert m["role_leak_rate"] == 0.5  # one tag written in the text, one cut by the runtime
    assert m["echo_rate"] == 0.25
    assert m["mean_tokens"] == 20.0
    assert 0.0 < m["repetition_rate"] < 1.0
    assert behaviour_metrics([]) == {name: 0.0 for name in METRIC_NAMES}


@pytest.mark.parametrize(
    "text,model,adapters,poe,rules",
    [
        ("default", "default", (), False, None),
        ("default+poe", "default", (), True, None),
        ("default+poe:eos,uniform", "default", (), True, "eos,uniform"),
        ("tuned.gguf", "tuned.gguf", (), False, None),
        ("base.gguf+adapter.gguf", "base.gguf", (("adapter.gguf", 1.0),), False, None),
        ("base.gguf+a.gguf@0.5+b.gguf+poe", "base.gguf", (("a.gguf", 0.5), ("b.gguf", 1.0)), True, None),
    ],
)
def test_parse_spec(text, model, adapters, poe, rules):
    spec = parse_spec(text)
    assert (spec.model, spec.adapters, spec.poe, spec.rules) == (model, adapters, poe, rules)


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "empty model spec"),
        ("+poe", "no model"),
        ("default+poe:eos,bogus", "unknown rule 'bogus'"),
        ("default+lora", "unknown suffix `+lora`"),
        ("default+poe:", "needs rule names"),
    ],
)
def test_parse_spec_errors(text, message):
    with pytest.raises(UserError, match=message.replace("+", r"\+")):
        parse_spec(text)


def test_load_prompts_formats_and_errors(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text(
        json.dumps({"instruction": "a"})
        + "\n\n"
        + json.dumps({"id": "x", "messages": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "B"}]})
        + "\n"
    )
    prompts = load_prompts(good)
    assert [(p.id, p.instruction, p.reference) for p in prompts] == [("0", "a", None), ("x", "b", "B")]
    assert prompts[1].messages == [{"role": "user", "content": "b"}]

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="empty.jsonl: no instructions"):
        load_prompts(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a"}\n{"instruction": \n')
    with pytest.raises(UserError, match="bad.jsonl:2: malformed JSON"):
        load_prompts(bad)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"instruction": "a"}\n\n{"text": "b"}\n')
    with pytest.raises(UserError, match="wrong.jsonl:3: row has none of"):
        load_prompts(wrong)


def test_cached_rows_skip_torn_lines_and_edited_instructions(tmp_path):
    from ijt_local.eval.generations import cached_rows
    from ijt_local.eval.prompt_sets import EvalPrompt

    cache = tmp_path / "m.jsonl"
    cache.write_text(
        json.dumps({"id": "0", "instruction": "a", "output": "A"})
        + "\n"
        + json.dumps({"id": "1", "instruction": "old b", "output": "B"})
        + "\n"
        + '{"id": "2", "instru'
    )  # killed mid-write
    prompts = [EvalPrompt(str(i), text, [{"role": "user", "content": text}]) for i, text in enumerate("abc")]
    assert list(cached_rows(cache, prompts)) == ["0"]
    assert cache.read_text().endswith("}\n")  # the torn line is cut away before appending
