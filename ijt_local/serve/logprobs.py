"""Logprobs in the shapes OpenAI's API uses, plus ijt-local's extension with the base model's view.

Chat completions (`logprobs: true, top_logprobs: k`): `choice.logprobs.content` is one entry per reply
token, `{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`, under the product of experts
(the distribution the token was drawn from). When the rule expert ran, `choice.ijt_base_logprobs.content`
runs beside it, one entry per token: `{token, logprob, rule_score, changed, top_logprobs}` where `logprob`
and `top_logprobs` are the base model's alone, `rule_score` is what the rules added to the token's logit,
and `changed` says the base model's own top token was another one.

Text completions (`logprobs: k`, the legacy form): `{tokens, token_logprobs, top_logprobs, text_offset}`;
with `echo` the prompt's tokens come first (the base model's logprobs; none for a first token with
nothing before it).
"""

from __future__ import annotations

from ..runtime.session import Session
from ..runtime.token_logprobs import TokenChoice, TopK


def token_text(session: Session, token: int) -> tuple[str, bytes]:
    raw = session.token_bytes(token, special=True)
    return raw.decode("utf-8", errors="replace"), raw


def _top_entries(session: Session, top: TopK) -> list[dict]:
    entries = []
    for token, logprob in zip(top.tokens, top.logprobs):
        text, raw = token_text(session, token)
        entries.append({"token": text, "logprob": logprob, "bytes": list(raw)})
    return entries


def chat_logprobs(session: Session, choices: list[TokenChoice], top: int) -> dict:
    content = []
    for choice in choices:
        text, raw = token_text(session, choice.token)
        content.append(
            {
                "token": text,
                "logprob": choice.logprob,
                "bytes": list(raw),
                "top_logprobs": _top_entries(session, choice.top)[:top],
            }
        )
    return {"content": content, "refusal": None}


def base_logprobs(session: Session, choices: list[TokenChoice], top: int) -> dict | None:
    """The extension field, None when no rules ran (the product is then the base model)."""
    if not choices or choices[0].base_top is None:
        return None
    content = []
    for choice in choices:
        text, raw = token_text(session, choice.token)
        content.append(
            {
                "token": text,
                "logprob": choice.base_logprob,
                "bytes": list(raw),
                "rule_score": choice.rule_score,
                "changed": choice.changed,
                "top_logprobs": _top_entries(session, choice.base_top)[: max(top, 1)],
            }
        )
    return {"content": content}


def completion_logprobs(session: Session, choices: list[TokenChoice | None], offset: int = 0) -> dict:
    """The legacy shape for `choices` (None = a token without a logprob), text offsets from `offset`."""
    tokens, token_logprobs, tops, offsets = [], [], [], []
    for choice in choices:
        text, _ = token_text(session, choice.token)
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
        token_logprobs.append(None if choice.logprob is None else choice.logprob)
        tops.append(
            None
            if choice.logprob is None
            else {entry["token"]: entry["logprob"] for entry in _top_entries(session, choice.top)}
        )
    return {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": tops, "text_offset": offsets}


def prompt_choices(session: Session, prompt: list[int], scored: list[TokenChoice | None]) -> list[TokenChoice]:
    """The echoed prompt's entries: a token without a score (the first) gets logprob None; a leading BOS
    that the tokenizer added (not in the prompt's text) is left out."""
    entries = []
    for position, (token, choice) in enumerate(zip(prompt, scored)):
        if position == 0 and session.adds_bos() and token == session.llama.bos_id:
            continue
        entries.append(choice if choice is not None else TokenChoice(token, None, TopK([], [])))
    return entries
