"""The rule-based expert (Hewitt et al. 2024, §6), tokenizer-agnostic and vectorised.

Four rules score every vocabulary entry at every decoding step:
  eos        slowly raise the probability of ending: +15·n/250, held at +15, +100 past 1024 tokens
  uniform    a fixed shift for ~15 words (`I` −5, `should` −6, `-` +1, …)
  diversity  −1.5 for every token already in the instruction or the response (fights echoing)
  start      shape the first three response tokens (first-token word classes, `!`, newline)

The first three are on by default: they are the paper's headline run, `eos-uniform-diversity` (its
repository's README, "Rule-Based Model"; `open_instruct/combined_model.py` turns `start` on only when the
option string names it, and neither the 24.4 % run nor any ablation does). `start` is ours to ask for by
name (`+poe:eos,uniform,diversity,start`, or `all`).

Words are resolved once per vocabulary into token ids; a generation keeps one float32 bias vector
that starts as the static (uniform) shift and is updated incrementally as tokens are seen, so each
step costs a single vectorised add over the vocabulary.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RULE_NAMES = ("eos", "uniform", "diversity", "start")
DEFAULT_RULES = frozenset({"eos", "uniform", "diversity"})  # the paper's headline run; the one home of the default


@dataclass
class RuleConfig:
    enabled: frozenset[str]
    settings: dict  # the merged TOML tables
    source: str = "defaults"

    @property
    def paper_exact(self) -> bool:
        return bool(self.settings["paper_exact"])

    def describe(self) -> dict:
        """What ran, for manifests and result files."""
        return {
            "rules": sorted(self.enabled, key=RULE_NAMES.index),
            "paper_exact": self.paper_exact,
            "config": self.source,
        }

    def eos_bonus(self, n: int) -> float:
        """EOS score for a response that has n tokens so far."""
        eos = self.settings["eos"]
        ramp, top = eos["ramp_tokens"], eos["max_bonus"]
        if n < ramp:
            return top * n / ramp
        if self.paper_exact:
            return 0.0
        return top + (eos["late_bonus"] if n > eos["late_after"] else 0.0)

    @property
    def history_turns(self) -> int | None:
        """Earlier exchanges a PoE reply's prompt carries (None = all); the paper's rules saw one turn."""
        value = int(self.settings["conversation"]["history_turns"])
        return None if self.paper_exact or value < 0 else value

    @property
    def earlier_reply_penalty(self) -> float:
        """Diversity score for each token of an earlier assistant reply in the prompt (0 = off)."""
        return self._conversation_score("earlier_replies")

    @property
    def copy_penalty(self) -> float:
        """Diversity score for a token that would continue an n-gram of an earlier reply (0 = off)."""
        return self._conversation_score("copy_penalty")

    @property
    def copy_ngram(self) -> int:
        return max(1, int(self.settings["conversation"]["copy_ngram"]))

    def _conversation_score(self, key: str) -> float:
        if self.paper_exact or "diversity" not in self.enabled:
            return 0.0
        return float(self.settings["conversation"][key])


def parse_rule_spec(spec: str | None) -> frozenset[str]:
    """`eos,uniform,diversity` (the paper's option string; `-` also separates). None is the default set
    (DEFAULT_RULES, the paper's three); `all` is all four, `start` included."""
    if spec is None:
        return DEFAULT_RULES
    if spec.strip().lower() == "all":
        return frozenset(RULE_NAMES)
    names = [n.strip() for n in spec.replace("-", ",").split(",") if n.strip()]
    if not names:
        raise UserError(f"empty rule list {spec!r} (rules: {', '.join(RULE_NAMES)}, or all)")
    unknown = [n for n in names if n not in RULE_NAMES]
    if unknown:
        raise UserError(f"unknown rule {unknown[0]!r} in {spec!r} (rules: {', '.join(RULE_NAMES)}, or all)")
    return frozenset(names)


def rule_spec_text(enabled: frozenset[str]) -> str:
    """The option string naming `enabled`, in RULE_NAMES order (`eos,uniform,diversity`)."""
    return ",".join(name for name in RULE_NAMES if name in enabled)


def _default_settings() -> dict:
    return tomllib.loads(files("ijt_local.rules").joinpath("default.toml").read_text(encoding="utf-8"))


def _merge(base: dict, override: dict, where: str, path: str = "") -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        dotted = f"{path}{key}"
        if key not in base:
            # word tables are open-ended; everything else must be a known key
            if path.rstrip(".").split(".")[-1] in ("words", "first_words", "second", "third"):
                merged[key] = float(value)
                continue
            raise UserError(f"{where}: unknown setting {dotted!r}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"{where}: {dotted!r} must be a table")
            merged[key] = _merge(base[key], value, where, dotted + ".")
        else:
            if isinstance(base[key], bool) != isinstance(value, bool) or not isinstance(value, (int, float, bool)):
                raise UserError(f"{where}: {dotted!r} must be {type(base[key]).__name__}")
            merged[key] = value
    return merged


def load_rules(
    spec: str | None = None, config_path: str | Path | None = None, paper_exact: bool | None = None
) -> RuleConfig:
    settings = _default_settings()
    source = "defaults"
    if config_path is not None:
        path = Path(config_path)
        try:
            user = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"{path}: cannot read rules config ({exc.strerror or exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: bad TOML ({exc})") from None
        user_spec = user.pop("rules", None)
        settings = _merge(settings, user, str(path))
        source = str(path)
        if spec is None and user_spec is not None:
            spec = ",".join(user_spec) if isinstance(user_spec, list) else str(user_spec)
    if paper_exact is not None:
        settings["paper_exact"] = paper_exact
    return RuleConfig(parse_rule_spec(spec), settings, source)


WORD_CLASSES = {"C": "capitalized", "l": "lowercase", "p": "punctuation"}  # code -> start-rule class


def _word_class(piece: str) -> str:
    """The start rule's class of a token's text, as one character of WORD_CLASSES ("-": none)."""
    word = piece.lstrip(" ")
    if not word:
        return "-"
    if word.isalpha():
        return "C" if word[0].isupper() else "l"
    if all(not c.isalnum() and not c.isspace() for c in word):
        return "p"
    return "-"


class Vocabulary:
    """The text of every token id, a lookup from text to the ids that spell exactly it, and each token's
    start-rule word class (a string with one WORD_CLASSES code per id; computed once, cached with the
    pieces by `vocab_cache`)."""

    def __init__(self, pieces: list[str], eos_id: int, word_classes: str | None = None):
        self.pieces = pieces
        self.eos_id = eos_id
        if word_classes is not None and len(word_classes) != len(pieces):
            raise ValueError("one word class per piece")
        self._word_classes = word_classes

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def word_classes(self) -> str:
        if self._word_classes is None:
            self._word_classes = "".join(_word_class(piece) for piece in self.pieces)
        return self._word_classes

    def ids_for(self, word: str) -> list[int]:
        """Single tokens spelling `word`, with or without the leading-space marker."""
        return self.lookup([word])[word]

    def lookup(self, words) -> dict[str, list[int]]:
        """`ids_for` of each word, in one pass over the vocabulary (a full text -> ids index of 262k pieces
        costs ~0.3 s, most of `--poe`'s start; the rules name a few dozen words)."""
        spellings: dict[str, list[str]] = {}
        for word in set(words):
            for spelling in (word, " " + word):
                spellings.setdefault(spelling, []).append(word)
        found: dict[str, list[int]] = {word: [] for word in words}
        for token_id, piece in enumerate(self.pieces):
            for word in spellings.get(piece, ()):
                found[word].append(token_id)
        return found


def _dense(size: int, table: dict[str, float], ids_of: dict[str, list[int]], unresolved: set[str]) -> np.ndarray:
    vector = np.zeros(size, dtype=np.float32)
    for word, score in table.items():
        ids = ids_of[word]
        if not ids:
            unresolved.add(word)
        vector[ids] += score
    return vector


class RuleExpert:
    """A RuleConfig resolved against one vocabulary: precomputed vectors, then cheap per-step work."""

    def __init__(self, config: RuleConfig, vocab: Vocabulary):
        self.config = config
        self.vocab = vocab
        size = len(vocab)
        s = config.settings
        self.unresolved: set[str] = set()
        on = config.enabled

        tables = [s["uniform"]["words"], s["start"]["first_words"], s["start"]["second"], s["start"]["third"]]
        ids_of = vocab.lookup([word for table in tables for word in table])
        self.static = np.zeros(size, dtype=np.float32)
        if "uniform" in on:
            self.static += _dense(size, s["uniform"]["words"], ids_of, self.unresolved)

        self.start_vectors: list[np.ndarray] = []
        if "start" in on:
            st = s["start"]
            first = np.zeros(size, dtype=np.float32)
            classes = np.frombuffer(vocab.word_classes.encode("ascii"), dtype=np.uint8)
            for code, cls in WORD_CLASSES.items():
                first[classes == ord(code)] = st[cls]
            for word, score in st["first_words"].items():
                ids = ids_of[word]
                if not ids:
                    self.unresolved.add(word)
                first[ids] = score
            self.start_vectors = [
                first * st["scale"],
                _dense(size, st["second"], ids_of, self.unresolved),
                _dense(size, st["third"], ids_of, self.unresolved),
            ]
        self.diversity_penalty = float(s["diversity"]["penalty"]) if "diversity" in on else 0.0
        self.use_eos = "eos" in on

    def start(self, instruction_tokens: list[int] = (), earlier_replies: list[list[int]] = ()) -> RuleState:
        return RuleState(self, instruction_tokens, earlier_replies)

    def describe(self) -> dict:
        return {**self.config.describe(), "unresolved_words": sorted(self.unresolved)}


class RuleState:
    """Per-generation state: the bias vector (static + diversity so far) and the response length.

    In a conversation, `earlier_replies` (the token ids of the assistant replies already in the prompt)
    extend the diversity rule: every distinct token of them gets `earlier_replies` once, and a token that
    would complete a `copy_ngram`-token sequence of an earlier reply gets `copy_penalty` at that step."""

    def __init__(self, expert: RuleExpert, instruction_tokens, earlier_replies=()):
        self.expert = expert
        self.n = 0
        self.bias = expert.static.copy()
        self.seen = np.zeros(len(expert.vocab), dtype=bool)
        if expert.diversity_penalty and len(instruction_tokens):
            ids = np.unique(np.asarray(instruction_tokens, dtype=np.int64))
            self.seen[ids] = True
            self.bias[ids] += expert.diversity_penalty
        config = expert.config
        earlier = [token for reply in earlier_replies for token in reply]
        if config.earlier_reply_penalty and earlier:
            self.bias[np.unique(np.asarray(earlier, dtype=np.int64))] += config.earlier_reply_penalty
        self.copy_penalty = config.copy_penalty if earlier else 0.0
        self.context = config.copy_ngram - 1  # tokens of the reply that must match an earlier reply
        self.recent: tuple[int, ...] = ()
        self.continuations: dict[tuple[int, ...], np.ndarray] = {}
        if self.copy_penalty:
            followers: dict[tuple[int, ...], set[int]] = {}
            for reply in earlier_replies:
                for i in range(len(reply) - self.context):
                    followers.setdefault(tuple(reply[i : i + self.context]), set()).add(reply[i + self.context])
            self.continuations = {key: np.fromiter(ids, dtype=np.int64) for key, ids in followers.items()}

    def copy(self) -> RuleState:
        """An independent state at the same point (scoring several responses to one prompt)."""
        other = copy.copy(self)
        other.bias, other.seen = self.bias.copy(), self.seen.copy()
        return other

    def scores(self) -> np.ndarray:
        """The rule scores for the next token, as a new vector (for scoring; decoding uses `apply`)."""
        out = self.bias.copy()
        self._add_step_terms(out)
        return out

    def apply(self, logits: np.ndarray) -> None:
        """Add the rule scores to `logits` in place: one pass over the vocabulary (two for 3 steps)."""
        logits += self.bias
        self._add_step_terms(logits)

    def _add_step_terms(self, vector: np.ndarray) -> None:
        expert = self.expert
        if self.n < len(expert.start_vectors):
            vector += expert.start_vectors[self.n]
        if expert.use_eos:
            vector[expert.vocab.eos_id] += expert.config.eos_bonus(self.n)
        if self.continuations and len(self.recent) == self.context:
            followers = self.continuations.get(self.recent)
            if followers is not None:
                vector[followers] += self.copy_penalty

    def accept(self, token: int) -> None:
        self.n += 1
        if self.continuations:
            self.recent = (self.recent + (token,))[-self.context :] if self.context else ()
        if self.expert.diversity_penalty and not self.seen[token]:
            self.seen[token] = True
            self.bias[token] += self.expert.diversity_penalty
