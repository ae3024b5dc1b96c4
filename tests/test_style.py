"""Style adherence: instruction domains from the instruction text, and the poem / GSM8K-answer detectors,
checked on hand-written cases and on the project's own data (poems vs LIMA responses)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ijt_local.data.home import data_home
from ijt_local.eval.style import has_gsm8k_answer, instruction_domain, is_poem, is_verse, style_rates

DATA = data_home()

POEM = """The river keeps its quiet vow,
it carries light from there to now;
the willows lean to hear it speak,
and stones grow smooth, and days grow weak."""

PROSE = (
    "Rivers form when rain collects in channels. Over time the water carves valleys, carries sediment "
    "downstream and deposits it where the current slows.\n\nMost large rivers end in a delta or estuary."
)

LIST_ANSWER = """Here are some tips:
- Sleep at the same time every night.
- Keep the room dark.
- Avoid caffeine after noon.
- Put the phone away."""

CODE = """def add(a, b):
    return a + b

class Adder:
    pass"""


@pytest.mark.parametrize(
    "instruction, domain",
    [
        ("Write a poem about the sea.", "poetry"),
        ("Can you write haiku for different inductive biases?", "poetry"),
        ("What are the lyrics to the third verse of Never Gonna Give You Up?", "poetry"),
        ("If a shirt costs $20 and is 25 percent off, how much do I pay?", "math"),
        ("What is 17 * 23?", "math"),
        ("Write me a short story about a cat who becomes mayor.", "creative"),
        ("Give me a recipe for banana bread.", "other"),
        ("How do I reverse a list in Python?", "other"),
    ],
)
def test_instruction_domain_comes_from_the_instruction(instruction, domain):
    assert instruction_domain(instruction) == domain


def test_poems_are_told_from_prose_lists_and_code():
    assert is_poem(POEM)
    assert not is_poem(PROSE) and not is_poem(LIST_ANSWER) and not is_poem(CODE)
    assert not is_poem("A short line.\nAnother.")  # fewer than 4 lines
    # a small model's repetition loop is verse in form but not a poem; a refrain is fine
    assert is_verse("How do I detail a car?\n" * 12) and not is_poem("How do I detail a car?\n" * 12)
    assert not is_poem("is a bannana a fruit or a herb\n" + "is a fruit or a herb,\n" * 20)
    assert is_poem(POEM + "\nthe river keeps its quiet vow,\n" + POEM)
    # prose written a sentence per line (PoE replies) and role-tag dialogues are not poems
    assert not is_poem(
        "Okay! So, let's start.\nOil is a liquid.\nIt is made of hydrocarbons.\nSo, it burns.\nNow, let's talk."
    )
    assert not is_poem("Okay!\n<|assistant|>\nFirst, the flour,\n<|assistant|>\nthen the eggs,\nand then we bake")


def test_gsm8k_answer_line():
    assert has_gsm8k_answer("She has 3 + 4 = 7 apples.\n#### 7")
    assert has_gsm8k_answer("#### 1,250") and has_gsm8k_answer("#### -3.5")
    assert not has_gsm8k_answer("The answer is 7.") and not has_gsm8k_answer("#### none")


def test_style_rates_per_domain():
    rows = [
        {"instruction": "Write a poem about rivers.", "output": POEM},
        {"instruction": "Write a poem about stones.", "output": PROSE},
        {"instruction": "Give me tips for sleeping.", "output": POEM},
        {"instruction": "What is 3 + 4?", "output": "#### 7"},
    ]
    rates = style_rates(rows)
    assert list(rates) == ["poetry", "math", "other"]
    assert rates["poetry"] == {"n": 2, "poem_rate": 0.5, "verse_rate": 0.5, "gsm8k_answer_rate": 0.0}
    assert rates["other"]["poem_rate"] == 1.0 and rates["math"]["gsm8k_answer_rate"] == 1.0


@pytest.mark.skipif(not (DATA / "poetry").is_dir(), reason="needs the data home (ijt-local data fetch all)")
def test_detectors_on_the_training_data():
    with open(DATA / "poetry" / "poems.csv", newline="") as handle:
        poems = [row["content"].replace("\r\n", "\n") for row in csv.DictReader(handle)]
    with_breaks = [p for p in poems if len([line for line in p.splitlines() if line.strip()]) >= 4]
    assert sum(map(is_poem, with_breaks)) / len(with_breaks) >= 0.95  # 453 of 471
    lima = [json.loads(line) for line in (DATA / "lima" / "lima_data.jsonl").read_text().splitlines()]
    responses = [m["content"] for row in lima for m in row["messages"] if m["role"] == "assistant"]
    assert sum(map(is_poem, responses)) / len(responses) <= 0.03  # 28 of 1,084, most of them real poems
    gsm8k = [json.loads(line) for line in (DATA / "gsm8k" / "train.jsonl").read_text().splitlines()[:200]]
    assert all(has_gsm8k_answer(row["answer"]) for row in gsm8k)
    assert not any(map(has_gsm8k_answer, responses))


def test_detector_agrees_with_hand_checked_model_replies():
    """38 real replies labelled by reading them: 8 poems the 1.5B judge wrote when asked, and 30 laptop-run
    replies (poetry adapter, rules, GSM8K adapter) that are not poems, among them every laptop reply the
    detector flags. Agreement 33/38: 7 of the 8 poems, 26 of the 30 non-poems."""
    rows = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "style_handcheck.jsonl").open()]
    poems = [row for row in rows if row["poem"]]
    others = [row for row in rows if not row["poem"]]
    assert len(poems) == 8 and len(others) == 30
    assert sum(is_poem(row["output"]) for row in poems) >= 7
    assert sum(not is_poem(row["output"]) for row in others) >= 26
