"""Replies in a conversation: which part of it a reply sees, and the one function that generates a turn.

`chat`, `generate --input` and `compare` on `{"turns": [...]}` rows all go through `generate_reply`, so a
conversation is windowed the same way everywhere; the rule state for the reply (diversity seeded by the
last user turn and, in a conversation, by the earlier replies in the window) is made by the Session.
"""

from __future__ import annotations

from .prompts import recent_turns
from .rules import RuleConfig


def history_window(rules: RuleConfig | None, history: int | None = None) -> int | None:
    """Earlier exchanges a reply's prompt carries: `history` when given (-1 = all), else the rule config's
    `[conversation] history_turns` under PoE, else all of them."""
    if history is not None:
        return None if history < 0 else history
    return rules.history_turns if rules is not None else None


def generate_reply(session, messages: list[dict], rules: RuleConfig | None = None, history: int | None = None,
                   **generate_options):
    """One assistant reply to a conversation that ends with a user message."""
    window = recent_turns(messages, history_window(rules, history))
    return session.generate(window, rules=rules, **generate_options)


def generate_turns(session, turns: list[str], rules: RuleConfig | None = None, history: int | None = None,
                   **generate_options) -> list:
    """Answer each user turn in order, with the model's own earlier replies in the conversation."""
    messages, generations = [], []
    for turn in turns:
        messages.append({"role": "user", "content": turn})
        generation = generate_reply(session, messages, rules, history, **generate_options)
        messages.append({"role": "assistant", "content": generation.text})
        generations.append(generation)
    return generations
