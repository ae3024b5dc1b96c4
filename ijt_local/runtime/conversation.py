"""Replies in a conversation: which part of it a reply sees, one reply for `chat`, and the turns of many
conversations answered together for `generate --input` and `compare`.

A conversation is windowed the same way everywhere (`history_window`, `prompts.recent_turns`); the rule
state for a reply (diversity seeded by the last user turn and, in a conversation, by the earlier replies
in the window) is made by the Session.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..prompts import recent_turns
from ..rules.expert import RuleConfig
from .batch import generate_all, generate_one
from .session import Generation


def history_window(rules: RuleConfig | None, history: int | None = None) -> int | None:
    """Earlier exchanges a reply's prompt carries: `history` when given (-1 = all), else the rule config's
    `[conversation] history_turns` under PoE, else all of them."""
    if history is not None:
        return None if history < 0 else history
    return rules.history_turns if rules is not None else None


def generate_reply(
    session,
    messages: list[dict],
    rules: RuleConfig | None = None,
    history: int | None = None,
    exact: bool | None = None,
    on_text=None,
    **generate_options,
) -> Generation:
    """One assistant reply to a conversation that ends with a user message (single stream, for chat and
    `generate --prompt`). `exact` decodes it as the batched paths do (whole row groups, see rows.py),
    so it is the reply `generate --input` and `serve` give; False: llama.cpp's faster one-row steps; None:
    whichever `Session.batch_invariant_by_default` picks for this model on this machine."""
    window = recent_turns(messages, history_window(rules, history))
    return generate_one(session, window, exact, on_text, rules=rules, **generate_options)


def turns_to_answer(messages: list[dict], turns: list[str] | None) -> tuple[list[dict], list[str]]:
    """A prompt for `answer_turns`: a multi-turn row's user turns, or a one-reply prompt as (messages
    before its last user turn, [that turn])."""
    if turns:
        return [], list(turns)
    return messages[:-1], [messages[-1]["content"]]


def answer_turns(
    session,
    prompts: list[tuple[list[dict], list[str]]],
    rules: RuleConfig | None = None,
    history: int | None = None,
    parallel: int | None = None,
    **generate_options,
) -> Iterator[tuple[int, list[Generation]]]:
    """Answer each prompt's user turns in order, every reply with the model's own earlier replies in
    context. A prompt is (messages before its first turn, user turns). Turn k of every prompt that has one
    is decoded in one batched round (`parallel` at once); (index, one Generation per turn) is yielded as
    soon as a prompt's last turn is answered."""
    window = history_window(rules, history)
    conversations = [list(before) for before, _ in prompts]
    replies: list[list[Generation]] = [[] for _ in prompts]
    for turn in range(max((len(turns) for _, turns in prompts), default=0)):
        active = [i for i, (_, turns) in enumerate(prompts) if turn < len(turns)]
        for i in active:
            conversations[i].append({"role": "user", "content": prompts[i][1][turn]})
        windows = [recent_turns(conversations[i], window) for i in active]
        for k, generation in generate_all(session, windows, parallel, rules=rules, **generate_options):
            i = active[k]
            conversations[i].append({"role": "assistant", "content": generation.text})
            replies[i].append(generation)
            if len(replies[i]) == len(prompts[i][1]):
                yield i, replies[i]


def generate_turns(
    session, turns: list[str], rules: RuleConfig | None = None, history: int | None = None, **generate_options
) -> list[Generation]:
    """The replies to one conversation's user turns, in order."""
    return next(answer_turns(session, [([], turns)], rules, history, 1, **generate_options))[1]
