"""The rule vocabulary cache: built once per model file, rebuilt when the file changes or the cache is
damaged, and giving the same rule expert as a vocabulary read from llama.cpp."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ijt_local.rules.expert import RuleExpert, Vocabulary, load_rules
from ijt_local.rules.vocab_cache import cache_file, load_vocabulary, model_identity

PIECES = ["<eos>", "Hello", " world", "!", " I", "okay", "12", "  "]


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.setenv("IJT_LOCAL_HOME", str(tmp_path / "home"))
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF model bytes")
    return path


def reader(calls):
    def read():
        calls.append(1)
        return list(PIECES)

    return read


def test_built_once_then_read_from_the_cache(model):
    calls = []
    first = load_vocabulary(model, len(PIECES), 0, reader(calls))
    second = load_vocabulary(model, len(PIECES), 0, reader(calls))
    assert len(calls) == 1
    assert second.pieces == first.pieces == PIECES
    assert second.word_classes == first.word_classes == "-ClpCl--"
    assert second.ids_for("world") == [2]


def test_a_changed_model_file_is_read_again(model):
    calls = []
    load_vocabulary(model, len(PIECES), 0, reader(calls))
    model.write_bytes(b"another model, another size")
    load_vocabulary(model, len(PIECES), 0, reader(calls))
    os.utime(model, ns=(1, 1))  # same size, another modification time
    load_vocabulary(model, len(PIECES), 0, reader(calls))
    assert len(calls) == 3


@pytest.mark.parametrize("damage", ["", "{not json", '{"identity": {}, "pieces": [], "word_classes": ""}', "truncate"])
def test_a_damaged_cache_is_rebuilt_not_trusted(model, damage):
    calls = []
    load_vocabulary(model, len(PIECES), 0, reader(calls))
    where = cache_file(model_identity(model, len(PIECES), 0))
    text = where.read_text()
    where.write_text(text[: len(text) // 2] if damage == "truncate" else damage)
    vocabulary = load_vocabulary(model, len(PIECES), 0, reader(calls))
    assert len(calls) == 2 and vocabulary.pieces == PIECES
    assert load_vocabulary(model, len(PIECES), 0, reader(calls)).pieces == PIECES and len(calls) == 2


@pytest.mark.slow
def test_the_cached_vocabulary_gives_the_same_rule_expert(real_session):
    cached = real_session.vocabulary()
    fresh = Vocabulary(
        [real_session.token_bytes(i).decode("utf-8", errors="replace") for i in range(real_session.n_vocab)],
        real_session.eos_id,
    )
    rules = load_rules()
    a, b = RuleExpert(rules, cached), RuleExpert(rules, fresh)
    assert np.array_equal(a.static, b.static) and a.unresolved == b.unresolved
    assert all(np.array_equal(x, y) for x, y in zip(a.start_vectors, b.start_vectors))
