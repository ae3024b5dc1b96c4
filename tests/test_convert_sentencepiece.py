"""The paper's two base-model vocabularies after conversion: Llama 2's SentencePiece BPE with byte fallback
(tiny tokenizers built here, both as tokenizer.json and as a bare tokenizer.model) and OLMo's GPT-NeoX
byte-level BPE. llama.cpp must split text as the reference tokenizer does, and the rule expert must find
its words in each vocabulary."""

from __future__ import annotations

import pytest
from tiny_convert_models import LLAMA2_STYLE_CORPUS, make_llama2_style_tokenizer, make_tiny_llama_for, make_tiny_olmo

from ijt_local.convert.hf_to_gguf import convert
from ijt_local.convert.parity import MIXED_CORPUS, llama_cpp_tokenize
from ijt_local.rules.expert import load_rules

pytest.importorskip("transformers")
TEXTS = MIXED_CORPUS + LLAMA2_STYLE_CORPUS + ["I", " I", "Okay!", "  ", "\n", "\n\nWhat", "unseen wörds ẞ ∑"]


@pytest.fixture(scope="module")
def llama2_style(tmp_path_factory):
    """(tokenizer, f32 GGUF) of a tiny llama with a Llama 2 style tokenizer.json."""
    folder = tmp_path_factory.mktemp("llama2-style")
    tokenizer = make_llama2_style_tokenizer(folder)
    make_tiny_llama_for(tokenizer, folder)
    gguf = folder / "model.gguf"
    convert(folder, gguf, "f32", progress=False)
    return tokenizer, gguf


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    """(SentencePieceProcessor, f32 GGUF) of a tiny llama whose folder has only tokenizer.model, trained
    by sentencepiece itself with Llama 2's settings."""
    spm = pytest.importorskip("sentencepiece")
    folder = tmp_path_factory.mktemp("spm")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(LLAMA2_STYLE_CORPUS * 20),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=500,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (folder / "tokenizer.vocab").unlink()
    processor = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))

    class Sized:  # what make_tiny_llama_for reads off a tokenizer
        bos_token_id, eos_token_id = 1, 2

        def __len__(self):
            return processor.get_piece_size()

    make_tiny_llama_for(Sized(), folder)
    gguf = folder / "model.gguf"
    convert(folder, gguf, "f32", progress=False)
    return processor, gguf


def test_llama2_style_tokenizer_json_splits_like_transformers(llama2_style):
    tokenizer, gguf = llama2_style
    want = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in TEXTS]
    assert any(tokenizer.convert_ids_to_tokens(ids).count("<0xF0>") for ids in want)  # byte fallback is used
    assert llama_cpp_tokenize(gguf, TEXTS) == want


def test_bare_sentencepiece_model_splits_like_sentencepiece(sentencepiece_model):
    processor, gguf = sentencepiece_model
    want = [processor.encode(text) for text in TEXTS]
    assert any(processor.id_to_piece(i).startswith("<0x") for ids in want for i in ids)
    assert llama_cpp_tokenize(gguf, TEXTS) == want


def single_token_spellings(encode, word: str) -> set[int]:
    """Ids the reference tokenizer uses for `word` alone or after a space, when that is one token."""
    found = set()
    for text in (word, " " + word):
        ids = encode(text)
        if len(ids) == 1:
            found |= set(ids)
    return found


def rule_words() -> list[str]:
    settings = load_rules().settings
    words = set(settings["uniform"]["words"]) | set(settings["start"]["first_words"])
    return sorted(words | set(settings["start"]["second"]) | set(settings["start"]["third"]))


@pytest.mark.parametrize("vocabulary", ["llama2_style", "olmo"])
def test_rule_words_resolve_on_the_paper_vocabularies(vocabulary, llama2_style, tmp_path):
    from transformers import AutoTokenizer

    from ijt_local.runtime.session import Session

    if vocabulary == "olmo":
        folder = make_tiny_olmo(tmp_path / "olmo")
        tokenizer, gguf = AutoTokenizer.from_pretrained(folder), tmp_path / "olmo.gguf"
        convert(folder, gguf, "f32", progress=False)
    else:
        tokenizer, gguf = llama2_style
    session = Session(str(gguf), n_ctx=64)
    try:
        expert = session.rule_expert(load_rules("all"))  # every rule's words, `start`'s too
        vocab = expert.vocab
        for word in rule_words():
            reference = single_token_spellings(
                lambda text: tokenizer(text, add_special_tokens=False)["input_ids"], word
            )
            assert reference <= set(vocab.ids_for(word)), (word, reference, vocab.ids_for(word))
            assert (word in expert.unresolved) == (not vocab.ids_for(word))
        resolved = [w for w in rule_words() if w not in expert.unresolved]
        assert {"I", "What", "should", "!", "\n"} <= set(resolved), expert.unresolved
    finally:
        session.close()
