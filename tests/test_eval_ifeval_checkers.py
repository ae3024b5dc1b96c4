"""Each IFEval checker against hand-made responses that follow and that break its instruction."""

import json

import pytest

from ijt_local.eval.ifeval.checkers import (
    CHECKERS,
    check_instruction,
    check_instruction_loose,
    count_sentences,
    count_words,
    loose_variants,
)
from ijt_local.eval.ifeval.run import accuracy, score_response

ENGLISH = "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden porch."

# (instruction id, kwargs, a response that follows it, a response that does not)
CASES = [
    ("keywords:existence", {"keywords": ["river", "stone"]}, "A River runs over a stone.", "A river runs."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": "at least"}, "cat Cat CAT", "cat cat dog"),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "one cat", "cat cat"),
    (
        "keywords:forbidden_words",
        {"forbidden_words": ["red", "blue"]},
        "Bluest skies, reddish sun.",
        "The sky is Blue today.",
    ),
    (
        "keywords:letter_frequency",
        {"letter": "z", "let_frequency": 3, "let_relation": "at least"},
        "Zig zag zoo",
        "Zig zag",
    ),
    (
        "keywords:letter_frequency",
        {"letter": "a", "let_frequency": 2, "let_relation": "less than"},
        "a dog",
        "a banana",
    ),
    (
        "language:response_language",
        {"language": "de"},
        "Der schnelle braune Fuchs springt über den faulen Hund, während der Bauer zusieht.",
        ENGLISH,
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "less than"},
        "One. Two.",
        "One. Two. Three.",
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "at least"},
        "Dr. Smith came. He sat! Did he? Yes.",
        "Dr. Smith came. He sat.",
    ),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3}, "a\n***\nb\n***\nc", "a\n***\nb"),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\na\n***\nb\n", "a\n***\n***\nb"),
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "at least"},
        "one two three four five",
        "one two three four",
    ),
    ("length_constraints:number_words", {"num_words": 3, "relation": "less than"}, "one two", "one two three"),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        'First part.\n\n"Then, second part.',
        "First part.\n\nAfter that, second part.",
    ),
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "Dear [name], at [address].",
        "Dear [name], hello.",
    ),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\np.s. see you", "Hi. See you."),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\nP.P.S more", "Hi.\nP.S. more"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n- two", "* one\n* two\n* three"),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Yes, certainly."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", "*one* and ** **"),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\nintro\nSection 2\nbody",
        "Section 1\nonly one",
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ("detectable_format:title", {}, "<<My Title>>\ntext", "<< >> no title"),
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", "Same.\n******\nSame."),
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a poem."},
        "write a poem. Roses are red.",
        "Roses are red.",
    ),
    (
        "startend:end_checker",
        {"end_phrase": "Any other questions?"},
        'Done. "Any other questions?"',
        "Any other questions? Done.",
    ),
    ("startend:quotation", {}, '  "all quoted"  ', '"not closed'),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "at least"},
        "THIS is VERY well-KNOWN",
        "THIS is well known",
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "less than"},
        "ONE word",
        "ONE TWO words",
    ),
    ("change_case:english_capital", {}, ENGLISH.upper(), ENGLISH),
    ("change_case:english_lowercase", {}, ENGLISH.lower(), ENGLISH),
    ("punctuation:no_comma", {}, "No commas here.", "One, two."),
]


@pytest.mark.parametrize("instruction_id,kwargs,good,bad", CASES, ids=[c[0] for c in CASES])
def test_checker_accepts_good_and_rejects_bad(instruction_id, kwargs, good, bad):
    assert check_instruction(instruction_id, good, kwargs) is True
    assert check_instruction(instruction_id, bad, kwargs) is False


def test_every_ifeval_instruction_has_a_case():
    assert {c[0] for c in CASES} == set(CHECKERS)
    assert len(CHECKERS) == 25


def test_empty_response_follows_nothing():
    assert check_instruction("punctuation:no_comma", "   ", {}) is False


def test_none_kwargs_are_ignored_as_in_the_hf_dataset():
    kwargs = {"num_words": 2, "relation": "at least", "keywords": None}
    assert check_instruction("length_constraints:number_words", "two words", kwargs)


def test_word_and_sentence_counts():
    assert count_words("It's a well-known fact, 42 times.") == 8
    assert count_sentences("Mr. Smith went to Washington. He saw the U.S.A. flag! Wow... really?") == 4


def test_loose_variants_drop_first_and_last_line_and_stars():
    variants = loose_variants("Sure!\n**body**\nHope this helps")
    assert "**body**" in variants and "body" in variants and "body\nHope this helps" in variants


def test_loose_accepts_a_response_wrapped_in_chatter_that_strict_rejects():
    response = 'Here is my answer:\n"quoted text"\nHope it helps.'
    assert not check_instruction("startend:quotation", response, {})
    assert check_instruction_loose("startend:quotation", response, {})


def test_accuracy_prompt_and_instruction_level():
    rows = [
        {
            "key": 1,
            "prompt": "Describe a quiet lake without commas, wrapped in double quotes.",
            "instruction_id_list": ["punctuation:no_comma", "startend:quotation"],
            "kwargs": [{}, {}],
        },
        {
            "key": 2,
            "prompt": "List two letters without using any commas.",
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": [{}],
        },
    ]
    scored = [score_response(rows[0], '"no commas"'), score_response(rows[1], "a, b")]
    acc = accuracy(scored)
    assert acc["prompt_level_strict"] == 0.5
    assert acc["instruction_level_strict"] == pytest.approx(2 / 3)
    assert acc["prompts"] == 2 and acc["instructions"] == 3
    assert acc["echo_rate"] == 0 and acc["prompt_level_loose_no_echo"] == acc["prompt_level_loose"]


def test_all_shared_ifeval_kwargs_are_accepted():
    from ijt_local.eval.ifeval.run import default_data_path, load_ifeval

    rows = load_ifeval(default_data_path())
    assert len(rows) == 541
    for row in rows:  # every kwargs set in the real data reaches its checker without a TypeError
        score_response(row, json.dumps(row["prompt"]))
