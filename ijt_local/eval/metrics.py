"""Behaviour metrics of a set of generations; no judge needed.

Each generation row carries `instruction`, `output`, `finish_reason` ('stop' | 'length'), `role_tag`
(the role tag the model emitted, which the runtime cut from `output`, or None) and `n_tokens`.

    stop_rate        share of outputs that ended by EOS or a role tag within the token budget (compare
                     generates through role tags by default, as the paper did, so there only EOS ends
                     a reply; with --stop-at-role-tags a role tag ends it too)
    role_leak_rate   share of outputs in which the model wrote a role tag (`<|user|>`, `<|im_start|>`, any
                     `<|word|>` …), i.e. went on to play another turn of the dialogue
    echo_rate        share of outputs that restate the instruction: at least ECHO_THRESHOLD (80 %) of the
                     instruction's word ECHO_N-grams (lower-cased \\w+ words; shorter instructions use
                     their whole word sequence as one n-gram) occur in the output. 80 % means a nearly
                     verbatim copy: at 50 % an answer that restates the question in a sentence ("The
                     capital city of Japan is Tokyo.") counted as an echo; on the 56 validation
                     instructions base-model echoes overlap 100 % and tuned answers at most ~78 %.
    repetition_rate  mean over outputs of the share of word REPETITION_N-grams that repeat an earlier one
                     in the same output (0 = no repeated 4-gram, near 1 = a loop)
    mean_tokens      mean number of generated tokens
    turn2_copy_rate  (only for files with `turns` rows; the five metrics above are then computed on each
                     row's last turn) share of second replies that mostly copy the first: at least
                     COPY_THRESHOLD (50 %) of the second reply's distinct word COPY_N-grams occur in the
                     model's first reply. Half, not 80 % as for echoes: a 270M model copying its first reply
                     drifts after a few sentences, and an answer to an unrelated question shares almost no
                     3-grams with the first reply (0.7 % on average for SmolLM2-135M-Instruct on the
                     two-turn dev set, none at 50 %). On real follow-ups ("Make it shorter.") copying is
                     often right: there the same model reaches 52 % on average.

Multi-turn rows carry `turns` (the user messages) and `outputs` (the replies, in order) beside
`instruction`/`output` (the last turn and its reply).
"""

from __future__ import annotations

import re

from ..prompts import CHATML, TULU

ECHO_N = 3
ECHO_THRESHOLD = 0.8
REPETITION_N = 4
COPY_N = 3
COPY_THRESHOLD = 0.5
ROLE_TAGS = tuple(dict.fromkeys(TULU.role_tags + CHATML.role_tags + ("<start_of_turn>", "<end_of_turn>")))
METRIC_NAMES = ("stop_rate", "role_leak_rate", "echo_rate", "repetition_rate", "mean_tokens")
MULTITURN_METRIC_NAMES = ("turn2_copy_rate",)

DEFINITIONS = {
    "stop_rate": "share of outputs ended by EOS or a role tag within the token budget",
    "role_leak_rate": f"share of outputs in which the model wrote a role tag ({', '.join(ROLE_TAGS)}, "
    "or any other <|word|>)",
    "echo_rate": f"share of outputs containing >= {ECHO_THRESHOLD:.0%} of the instruction's word {ECHO_N}-grams",
    "repetition_rate": f"mean share of word {REPETITION_N}-grams that repeat an earlier one in the same output",
    "mean_tokens": "mean number of generated tokens",
    "turn2_copy_rate": f"share of two-turn rows whose second reply has >= {COPY_THRESHOLD:.0%} of its word "
    f"{COPY_N}-grams in the first reply (rows with turns; the other metrics then measure the last turn)",
}


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


# Tulu-style tags for roles the template does not have (`<|system|>`, `<|admin|>` …) are leaks too.
_TAG_PATTERN = re.compile("|".join(re.escape(tag) for tag in ROLE_TAGS) + r"|<\|[A-Za-z_]{1,20}\|>")


def find_role_tag(text: str) -> str | None:
    """The earliest role tag in `text`, or None."""
    match = _TAG_PATTERN.search(text)
    return match.group(0) if match else None


def echo_overlap(instruction: str, output: str) -> float:
    """Share of the instruction's word n-grams that occur in the output."""
    inst, out = words(instruction), words(output)
    if not inst:
        return 0.0
    n = min(ECHO_N, len(inst))
    wanted = set(ngrams(inst, n))
    have = set(ngrams(out, n))
    return len(wanted & have) / len(wanted)


def copy_overlap(earlier: str, reply: str) -> float:
    """Share of the reply's distinct word n-grams that occur in an earlier reply."""
    out = words(reply)
    if not out:
        return 0.0
    n = min(COPY_N, len(out))
    grams = set(ngrams(out, n))
    return len(grams & set(ngrams(words(earlier), n))) / len(grams)


def is_turn2_copy(row: dict) -> bool:
    outputs = row["outputs"]
    return copy_overlap(outputs[0], outputs[1]) >= COPY_THRESHOLD


def metric_names(metrics: dict) -> list[str]:
    """The metric columns a result has: the five, and the multi-turn one when its prompts had turns."""
    return [name for name in METRIC_NAMES + MULTITURN_METRIC_NAMES if name in metrics]


def is_echo(instruction: str, output: str) -> bool:
    return echo_overlap(instruction, output) >= ECHO_THRESHOLD


def repetition(output: str) -> float:
    grams = ngrams(words(output), REPETITION_N)
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def is_role_leak(row: dict) -> bool:
    return bool(row.get("role_tag")) or find_role_tag(row["output"]) is not None


def behaviour_metrics(rows: list[dict]) -> dict:
    """The five metrics over generation rows (an empty list gives zeros), and `turn2_copy_rate` over the
    rows with two or more turns when there are any."""
    n = len(rows)
    if n == 0:
        return {name: 0.0 for name in METRIC_NAMES}
    multi = [r for r in rows if len(r.get("outputs") or ()) >= 2]
    extra = {"turn2_copy_rate": sum(map(is_turn2_copy, multi)) / len(multi)} if multi else {}
    return {
        "stop_rate": sum(r["finish_reason"] == "stop" for r in rows) / n,
        "role_leak_rate": sum(is_role_leak(r) for r in rows) / n,
        "echo_rate": sum(is_echo(r["instruction"], r["output"]) for r in rows) / n,
        "repetition_rate": sum(repetition(r["output"]) for r in rows) / n,
        "mean_tokens": sum(r["n_tokens"] for r in rows) / n,
    } | extra
