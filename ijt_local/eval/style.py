"""Style adherence: does a single-task model answer in its task's style, and on which instructions?

The paper's single-task finding: a model tuned only on poems follows instructions in general, and "when
instructions are very different from those in the narrow finetuning domain, models' responses do not
adhere to the style of the finetuning domain". Measuring it needs two things, both decided from text:

- the instruction's domain, from the instruction alone (never from the reply): `poetry` (asks for a poem,
  verse, song, haiku, ...), `math` (a word problem or a calculation), `creative` (a story, letter,
  essay, script, ...), else `other` (facts, advice, code, recipes, ...);
- the reply's style: `is_poem` (a heuristic on line shape, checked against the poetry training set and
  LIMA responses in tests/test_style.py) and `has_gsm8k_answer` (GSM8K's
  `#### <number>` final-answer line).

`style_rates` gives, per domain, how many replies there are and the share that are poems and that end
GSM8K-style, so a poetry model's poem share on poetry instructions can be read beside its share elsewhere.
"""

from __future__ import annotations

import re
import statistics

DOMAINS = ("poetry", "math", "creative", "other")

_POETRY = re.compile(
    r"\b(poems?|poetry|poetic|verses?|haikus?|sonnets?|limericks?|lyrics|songs?|rhym\w*|stanzas?|"
    r"odes?|ballads?)\b",
    re.I,
)
_MATH = re.compile(
    r"\b(calculate|compute|how (many|much)|solve|equation|sum of|product of|percent(age)?|average|"
    r"total cost|probability|divided|multiplied|times as)\b|\d\s*[-+*/x×^=]\s*\d",
    re.I,
)
_CREATIVE = re.compile(
    r"\b(story|stories|tale|essay|letter|script|screenplay|dialogue|fiction|novel|joke|speech|"
    r"slogan|tweet|blog post|backstory|character|imagine|pretend|role-?play)\b",
    re.I,
)

_LIST_ITEM = re.compile(r"^([-*•+]|\d+[.)]|[a-z][.)]|#+)\s")
_CODE = re.compile(r"```|[{}]\s*$|^(def|class|import|function|public|private|#include|SELECT)\s")
_GSM8K_ANSWER = re.compile(r"####\s*-?\$?\s*[\d,]*\.?\d+")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


def instruction_domain(instruction: str) -> str:
    """The first of poetry, math, creative that the instruction asks for, else other."""
    for name, pattern in (("poetry", _POETRY), ("math", _MATH), ("creative", _CREATIVE)):
        if pattern.search(instruction):
            return name
    return "other"


def is_verse(text: str) -> bool:
    """Verse form: at least 4 non-empty lines, nearly all short (80 % within 80 characters, median <= 12
    words), not a list and not code. A small model's repetition loop of one short line has this form too;
    it is the format a poetry adapter imposes, whether or not a poem comes out."""
    return _is_verse(_lines(text))


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _is_verse(lines: list[str]) -> bool:
    if len(lines) < 4:
        return False
    if sum(bool(_LIST_ITEM.match(line)) for line in lines) > len(lines) / 3:
        return False
    if any(_CODE.search(line) for line in lines):
        return False
    short = sum(len(line) <= 80 for line in lines) / len(lines)
    return short >= 0.8 and statistics.median(len(line.split()) for line in lines) <= 12


def is_poem(text: str) -> bool:
    """Verse that reads as a poem: its lines mostly differ (a refrain may repeat, a loop of one line is not
    a poem), at most half end a sentence (prose written a sentence per line, as PoE replies often are,
    ends nearly every line with . ! or ?; a poem in couplets ends every other line), and no line is a
    role tag or a calculation. On the poetry training set it finds 453 of the 471 poems that keep their
    line breaks (the other 102 are stored as one line); it flags 28 of LIMA's 1,084 responses, most of them
    real poems and lyrics; on hand-checked model replies see tests/fixtures/style_handcheck.jsonl and
    tests/test_style.py."""
    lines = _lines(text)
    if not _is_verse(lines) or len(set(lines)) < max(4, len(lines) / 2):
        return False
    if any(line.startswith("<|") for line in lines) or sum("=" in line for line in lines) > len(lines) / 3:
        return False
    return sum(bool(_SENTENCE_END.search(line)) for line in lines) <= len(lines) / 2


def has_gsm8k_answer(text: str) -> bool:
    """A GSM8K-style final answer line: `#### <number>`."""
    return bool(_GSM8K_ANSWER.search(text))


def style_rates(rows: list[dict]) -> dict:
    """{domain: {"n", "poem_rate", "verse_rate", "gsm8k_answer_rate"}} over rows with `instruction` and `output`;
    domains without replies are left out."""
    by_domain: dict[str, list[str]] = {}
    for row in rows:
        by_domain.setdefault(instruction_domain(row["instruction"]), []).append(row["output"])
    return {
        domain: {
            "n": len(outputs),
            "poem_rate": sum(map(is_poem, outputs)) / len(outputs),
            "verse_rate": sum(map(is_verse, outputs)) / len(outputs),
            "gsm8k_answer_rate": sum(map(has_gsm8k_answer, outputs)) / len(outputs),
        }
        for domain in DOMAINS
        if (outputs := by_domain.get(domain))
    }
