"""The 25 IFEval instruction checkers, following the published definitions
(google-research/instruction_following_eval, `instructions.py`, Apache-2.0).

Written here rather than imported because the maintained packages load NLTK data (punkt) at import or
check time, which cannot be downloaded offline. Two places differ from the reference, both where it used
NLTK:
  * sentence counting uses the reference's own regex splitter (`split_into_sentences`, which the
    reference uses for key-sentence checks) instead of the punkt model;
  * `change_case:capital_word_frequency` tokenises words with a regex (hyphen- and apostrophe-joined
    words count as one) instead of nltk.word_tokenize.
Everything else (regexes, comparison relations, langdetect, the "undetectable language counts as
followed" rule) is as published.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Callable

import langdetect

langdetect.DetectorFactory.seed = 0  # langdetect is randomised; fix it so results repeat

CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _compare(count: int, relation: str, threshold: int) -> bool:
    if relation == "less than":
        return count < threshold
    if relation == "at least":
        return count >= threshold
    raise ValueError(f"unknown comparison relation {relation!r}")


def _detect_language(text: str) -> str | None:
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException:
        return None


# --- text utilities (reference: instructions_util.py) -------------------------------------------

_ALPHABETS = "([A-Za-z])"
_PREFIXES = "(Mr|St|Mrs|Ms|Dr)[.]"
_SUFFIXES = "(Inc|Ltd|Jr|Sr|Co)"
_STARTERS = (
    r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s|That\s"
    r"|This\s|Wherever)"
)
_ACRONYMS = "([A-Z][.][A-Z][.](?:[A-Z][.])?)"
_WEBSITES = "[.](com|net|org|io|gov|edu|me)"
_DIGITS = "([0-9])"
_MULTIPLE_DOTS = r"\.{2,}"


def split_into_sentences(text: str) -> list[str]:
    text = " " + text + "  "
    text = text.replace("\n", " ")
    text = re.sub(_PREFIXES, "\\1<prd>", text)
    text = re.sub(_WEBSITES, "<prd>\\1", text)
    text = re.sub(_DIGITS + "[.]" + _DIGITS, "\\1<prd>\\2", text)
    text = re.sub(_MULTIPLE_DOTS, lambda m: "<prd>" * len(m.group(0)) + "<stop>", text)
    text = text.replace("Ph.D.", "Ph<prd>D<prd>")
    text = re.sub(r"\s" + _ALPHABETS + "[.] ", " \\1<prd> ", text)
    text = re.sub(_ACRONYMS + " " + _STARTERS, "\\1<stop> \\2", text)
    text = re.sub(_ALPHABETS + "[.]" + _ALPHABETS + "[.]" + _ALPHABETS + "[.]", "\\1<prd>\\2<prd>\\3<prd>", text)
    text = re.sub(_ALPHABETS + "[.]" + _ALPHABETS + "[.]", "\\1<prd>\\2<prd>", text)
    text = re.sub(" " + _SUFFIXES + "[.] " + _STARTERS, " \\1<stop> \\2", text)
    text = re.sub(" " + _SUFFIXES + "[.]", " \\1<prd>", text)
    text = re.sub(" " + _ALPHABETS + "[.]", " \\1<prd>", text)
    text = text.replace(".\u201d", "\u201d.").replace('."', '".').replace('!"', '"!').replace('?"', '"?')
    text = text.replace(".", ".<stop>").replace("?", "?<stop>").replace("!", "!<stop>")
    text = text.replace("<prd>", ".")
    sentences = [s.strip() for s in text.split("<stop>")]
    if sentences and not sentences[-1]:
        sentences = sentences[:-1]
    return sentences


def count_sentences(text: str) -> int:
    return len([s for s in split_into_sentences(text) if s])


def count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))


# --- checkers: (response, **kwargs) -> bool ------------------------------------------------------


def response_language(value, *, language):
    detected = _detect_language(value)
    return True if detected is None else detected == language


def number_sentences(value, *, num_sentences, relation):
    return _compare(count_sentences(value), relation, num_sentences)


def number_placeholders(value, *, num_placeholders):
    return len(re.findall(r"\[.*?\]", value)) >= num_placeholders


def number_bullet_lists(value, *, num_bullets):
    stars = re.findall(r"^\s*\*[^\*].*$", value, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", value, flags=re.MULTILINE)
    return len(stars) + len(dashes) == num_bullets


def constrained_response(value):
    value = value.strip()
    return any(option in value for option in CONSTRAINED_RESPONSES)


def number_highlighted_sections(value, *, num_highlights):
    count = sum(1 for h in re.findall(r"\*[^\n\*]*\*", value) if h.strip("*").strip())
    count += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", value) if h.removeprefix("**").removesuffix("**").strip())
    return count >= num_highlights


def multiple_sections(value, *, section_spliter, num_sections):
    sections = re.split(r"\s?" + section_spliter + r"\s?\d+\s?", value)
    return len(sections) - 1 >= num_sections


def number_paragraphs(value, *, num_paragraphs):
    paragraphs = re.split(r"\s?\*\*\*\s?", value)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False
    return count == num_paragraphs


def postscript(value, *, postscript_marker):
    value = value.lower()
    if postscript_marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif postscript_marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + postscript_marker.lower() + r".*$"
    return bool(re.findall(pattern, value, flags=re.MULTILINE))


def keyword_existence(value, *, keywords):
    return all(re.search(keyword, value, flags=re.IGNORECASE) for keyword in keywords)


def keyword_frequency(value, *, keyword, frequency, relation):
    return _compare(len(re.findall(keyword, value, flags=re.IGNORECASE)), relation, frequency)


def number_words(value, *, num_words, relation):
    return _compare(count_words(value), relation, num_words)


def json_format(value):
    value = (
        value.strip()
        .removeprefix("```json")
        .removeprefix("```Json")
        .removeprefix("```JSON")
        .removeprefix("```")
        .removesuffix("```")
        .strip()
    )
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def nth_paragraph_first_word(value, *, num_paragraphs, nth_paragraph, first_word):
    paragraphs = re.split(r"\n\n", value)
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    found = ""
    for letter in word:
        if letter in {".", ",", "?", "!", "'", '"'}:
            break
        found += letter.lower()
    return count == num_paragraphs and found == first_word.lower()


def forbidden_words(value, *, forbidden_words):
    return not any(re.search(r"\b" + word + r"\b", value, flags=re.IGNORECASE) for word in forbidden_words)


def two_responses(value):
    responses = value.split("******")
    valid = []
    for index, response in enumerate(responses):
        if not response.strip():
            if index not in (0, len(responses) - 1):
                return False
        else:
            valid.append(response)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def repeat_prompt(value, *, prompt_to_repeat):
    return value.strip().lower().startswith(prompt_to_repeat.strip().lower())


def end_checker(value, *, end_phrase):
    return value.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def title(value):
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", value))


def letter_frequency(value, *, letter, let_frequency, let_relation):
    return _compare(collections.Counter(value.lower())[letter.lower()], let_relation, let_frequency)


def english_capital(value):
    detected = _detect_language(value)
    return True if detected is None else value.isupper() and detected == "en"


def english_lowercase(value):
    detected = _detect_language(value)
    return True if detected is None else value.islower() and detected == "en"


def no_comma(value):
    return "," not in value


def capital_word_frequency(value, *, capital_frequency, capital_relation):
    words = re.findall(r"[^\W_]+(?:[-'][^\W_]+)*", value)
    return _compare(sum(1 for w in words if w.isupper()), capital_relation, capital_frequency)


def quotation(value):
    value = value.strip()
    return len(value) > 1 and value[0] == '"' and value[-1] == '"'


CHECKERS: dict[str, Callable[..., bool]] = {
    "keywords:existence": keyword_existence,
    "keywords:frequency": keyword_frequency,
    "keywords:forbidden_words": forbidden_words,
    "keywords:letter_frequency": letter_frequency,
    "language:response_language": response_language,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:number_words": number_words,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_content:postscript": postscript,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:constrained_response": constrained_response,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:json_format": json_format,
    "detectable_format:title": title,
    "combination:two_responses": two_responses,
    "combination:repeat_prompt": repeat_prompt,
    "startend:end_checker": end_checker,
    "startend:quotation": quotation,
    "change_case:capital_word_frequency": capital_word_frequency,
    "change_case:english_capital": english_capital,
    "change_case:english_lowercase": english_lowercase,
    "punctuation:no_comma": no_comma,
}


def check_instruction(instruction_id: str, response: str, kwargs: dict) -> bool:
    """Strict check of one instruction: an empty response never follows anything."""
    checker = CHECKERS.get(instruction_id)
    if checker is None:
        raise KeyError(instruction_id)
    args = {k: v for k, v in (kwargs or {}).items() if v is not None}
    return bool(response.strip()) and bool(checker(response, **args))


def loose_variants(response: str) -> list[str]:
    """The reference's loose transforms: drop the first and/or last line, and/or remove `*`."""
    lines = response.split("\n")
    remove_first = "\n".join(lines[1:]).strip()
    remove_last = "\n".join(lines[:-1]).strip()
    remove_both = "\n".join(lines[1:-1]).strip()
    variants = [response, response.replace("*", ""), remove_first, remove_last, remove_both]
    variants += [v.replace("*", "") for v in (remove_first, remove_last, remove_both)]
    return variants


def check_instruction_loose(instruction_id: str, response: str, kwargs: dict) -> bool:
    return any(check_instruction(instruction_id, variant, kwargs) for variant in loose_variants(response))
