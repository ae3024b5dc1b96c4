"""Grammars as a hard expert: a JSON schema, "any JSON object" or a GBNF grammar, compiled by llguidance
against the model's vocabulary into a matcher that gives, at every step, the tokens the grammar admits.

In the product a grammar's score is 0 for an admitted token and −∞ for any other (`GrammarState.apply`),
added after the rules and the request's other scores (ijt_local/runtime/scores.py). A matcher belongs to one
sequence and follows only that sequence's tokens, so a constrained reply is the same at any batch width.

llguidance was chosen over llama.cpp's own grammar sampler and xgrammar (docs/chat-and-serve.md,
scripts/bench_grammar.py): on gemma-3-270m's 262,144 tokens a JSON schema's mask and its scores take
~0.2 ms a token where llama.cpp's sampler takes ~40 ms (more than a decode step), it installs from PyPI as
one wheel with no dependencies (xgrammar needs torch, transformers and triton), and it reads a llama.cpp
vocabulary directly.
"""

from __future__ import annotations

import json
import threading
import weakref

import numpy as np

from ..errors import UserError

# Byte -> 8 scores (0 admitted, −inf not) for bits in little-endian order: a mask of 32-bit words becomes a
# vector of scores with one gather and one add, ~0.15 ms for 262k tokens whatever the pattern.
_BYTE_SCORES = np.where(
    np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little").astype(bool), 0.0, -np.inf
).astype(np.float32)

_tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LlamaModel -> llguidance tokenizer
_tokenizers_lock = threading.Lock()


def grammar_tokenizer(session):
    """llguidance's view of the session's vocabulary, made once per model (~2 s for 262k tokens)."""
    with _tokenizers_lock:
        tokenizer = _tokenizers.get(session.llama)
        if tokenizer is None:
            tokenizer = _tokenizers[session.llama] = session.llama.grammar_tokenizer()
        return tokenizer


class Grammar:
    """A compiled grammar over one vocabulary; `start()` gives each sequence its own matcher."""

    def __init__(self, session, compiled: str, kind: str, source: str):
        import llguidance

        self.kind, self.source = kind, source  # "json_schema", "json_object" or "gbnf"; the text as given
        self.n_vocab = session.n_vocab
        self.end_token = session.eos_id
        self._matcher = llguidance.LLMatcher(grammar_tokenizer(session), compiled, log_level=0)
        if self._matcher.is_error():
            raise UserError(_clean_error(self._matcher.get_error()))

    def start(self) -> GrammarState:
        return GrammarState(self, self._matcher.deep_copy())

    def complete(self, tokens: list[int]) -> bool:
        """Whether `tokens` (a reply, without its end token) are a whole sentence of the grammar."""
        matcher = self._matcher.deep_copy()
        return matcher.consume_tokens(tokens) and matcher.is_accepting() if tokens else matcher.is_accepting()


class GrammarState:
    """One sequence's matcher: the mask of the next token, and the tokens taken so far."""

    def __init__(self, grammar: Grammar, matcher):
        self.grammar = grammar
        self.matcher = matcher
        words = -(-grammar.n_vocab // 32)
        self.mask = np.empty((1, words), dtype=np.int32)
        self.scores = np.empty((words * 4, 8), dtype=np.float32)
        self.note: str | None = None
        self.taken = 0

    def apply(self, logits: np.ndarray) -> None:
        """Add the grammar's scores (0 or −∞) to `logits` in place. When it admits no token at all (an
        error in the matcher, or a grammar with no way on), only the end token is left, and `note` says why."""
        from llguidance.numpy import fill_next_token_bitmask

        matcher = self.matcher
        if not matcher.is_error():
            fill_next_token_bitmask(matcher, self.mask)
        if matcher.is_error() or not self.mask.any():
            self.note = f"the grammar admits no token after {self.taken} reply tokens; the reply ends there"
            logits.fill(-np.inf)
            logits[self.grammar.end_token] = 0.0
            return
        np.take(_BYTE_SCORES, self.mask.view(np.uint8).reshape(-1), axis=0, out=self.scores)
        logits += self.scores.reshape(-1)[: logits.shape[0]]

    def accept(self, token: int) -> None:
        if self.note is None:
            self.matcher.consume_token(token)
            self.taken += 1


def _clean_error(text: str) -> str:
    return " ".join(str(text).split())[:300] or "the grammar cannot be compiled"


def json_schema_grammar(session, schema, strict: bool = True) -> Grammar:
    """A JSON schema (a dict, or its JSON text) as a grammar. Strict: every keyword must be enforced, one
    llguidance cannot enforce is an error; not strict: such keywords are dropped (llguidance's lenient
    mode). Replies are compact JSON (", " and ": " separators, no other whitespace). UserError when the
    schema is not a JSON object or cannot be compiled."""
    import llguidance

    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise UserError(f"not valid JSON ({exc})") from None
    if not isinstance(schema, dict):
        raise UserError(f"a JSON schema is a JSON object (got {type(schema).__name__})")
    try:
        compiled = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides={"lenient": not strict})
    except (ValueError, TypeError) as exc:
        raise UserError(_clean_error(exc)) from None
    return Grammar(session, compiled, "json_schema", json.dumps(schema))


def json_object_grammar(session) -> Grammar:
    """Any JSON object (OpenAI's `response_format: {"type": "json_object"}`)."""
    return json_schema_grammar(session, {"type": "object"})


def gbnf_grammar(session, text: str) -> Grammar:
    """A GBNF grammar (llama.cpp's format, `root` its start rule). UserError when it does not parse or
    compile."""
    import llguidance
    from llguidance.gbnf_to_lark import any_to_lark

    if not text.strip():
        raise UserError("the grammar is empty")
    try:
        lark = any_to_lark(text)
    except Exception as exc:  # noqa: BLE001 - the converter raises several kinds for a bad grammar
        raise UserError(f"not a GBNF grammar ({_clean_error(exc)})") from None
    return Grammar(session, llguidance.LLMatcher.grammar_from_lark(lark), "gbnf", text)


def constraint_scores(session, constraint: tuple[str, str] | None):
    """The RequestScores of a --json-schema or --grammar FILE, `constraint` = ("json_schema" | "gbnf", path),
    compiled for this vocabulary (None for none); UserError naming the file when it cannot be read or
    compiled."""
    if constraint is None:
        return None
    from pathlib import Path

    from .scores import RequestScores

    kind, path = constraint
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        grammar = json_schema_grammar(session, text) if kind == "json_schema" else gbnf_grammar(session, text)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    return RequestScores.make(grammar=grammar)
