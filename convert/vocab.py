"""The tokenizer of a Hugging Face folder -> GGUF tokenizer metadata that llama.cpp reads.

Two styles, told apart by tokenizer.json (or a bare SentencePiece tokenizer.model):

    byte-level BPE (GPT-2 style: SmolLM2, Llama 3, Qwen2)   tokenizer.ggml.model = gpt2, merges, pre-tokenizer
    SentencePiece-style BPE with byte fallback (Gemma, Llama 2, Mistral)
                                                            tokenizer.ggml.model = llama, per-token scores

llama.cpp's SentencePiece tokenizer merges the adjacent pair whose *result* has the highest score, while a
tokenizer.json lists merges by rank; a token's score is therefore minus the rank of the first merge that
produces it, which makes both pick the same merges.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ijt_local.errors import UserError

from .gguf_output import tulu_chat_template_jinja

# tokenizer.json pre-tokenizer patterns -> the name llama.cpp knows the same splitting rule by.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPLIT_PATTERNS = {QWEN2_PATTERN: "qwen2", LLAMA3_PATTERN: "llama-bpe"}

# gguf.TokenType values (kept as ints so this module loads without numpy work)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class GGUFVocab:
    model: str  # "gpt2" or "llama"
    pre: str
    tokens: list[bytes]
    types: list[int]
    scores: list[float] | None = None
    add_space_prefix: bool | None = None
    merges: bool = False  # written by gguf.SpecialVocab from tokenizer.json


def _pre_tokenizer_name(tokenizer: dict, where: Path) -> str:
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = steps[0].get("pattern", {}).get("Regex")
        if pattern in SPLIT_PATTERNS:
            return SPLIT_PATTERNS[pattern]
    raise UserError(
        f"{where}: pre-tokenizer {json.dumps(pre)[:160]} is not one llama.cpp is known to reproduce "
        "(known: GPT-2, SmolLM, Qwen2, Llama 3 byte-level BPE)"
    )


def _id_to_token(tokenizer: dict, vocab_size: int, where: Path) -> dict[int, tuple[str, dict | None]]:
    by_id: dict[int, tuple[str, dict | None]] = {i: (t, None) for t, i in tokenizer["model"]["vocab"].items()}
    for added in tokenizer.get("added_tokens", []):
        by_id[added["id"]] = (added["content"], added)
    top = max(by_id) + 1
    if top > vocab_size:
        raise UserError(f"{where}: the tokenizer has {top} tokens but the model's embedding has only {vocab_size} rows")
    return by_id


def _padded(by_id: dict, vocab_size: int):
    """(id, text, added-token entry or None); ids the tokenizer lacks (embedding rows padded for speed)
    come back with text None and are written as UNUSED `[PAD<id>]` tokens."""
    for token_id in range(vocab_size):
        yield (token_id, *by_id[token_id]) if token_id in by_id else (token_id, None, None)


def _byte_level_vocab(tokenizer: dict, vocab_size: int, where: Path) -> GGUFVocab:
    pre = _pre_tokenizer_name(tokenizer, where)
    tokens, types = [], []
    for token_id, text, added in _padded(_id_to_token(tokenizer, vocab_size, where), vocab_size):
        tokens.append((text if text is not None else f"[PAD{token_id}]").encode("utf-8"))
        if text is None:
            types.append(UNUSED)
        elif added is None:
            types.append(NORMAL)
        else:
            types.append(CONTROL if added.get("special") else USER_DEFINED)
    return GGUFVocab("gpt2", pre, tokens, types, merges=True)


def _merge_ranked_scores(tokenizer: dict) -> dict[str, float]:
    scores: dict[str, float] = {}
    for rank, merge in enumerate(tokenizer["model"].get("merges", [])):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        scores.setdefault(left + right, -float(rank))
    return scores


def _space_prefix(tokenizer: dict) -> bool:
    """True when the tokenizer puts '▁' in front of the text (Llama 2 style); Gemma does not."""
    parts = []
    for key in ("normalizer", "pre_tokenizer"):
        step = tokenizer.get(key) or {}
        parts.extend(step.get("normalizers") or step.get("pretokenizers") or [step])
    for step in parts:
        if step.get("type") == "Prepend" and step.get("prepend") == "▁":
            return True
        if step.get("type") == "Metaspace" and step.get("prepend_scheme", "always") != "never":
            return True
    return False


def _sentencepiece_bpe_vocab(tokenizer: dict, vocab_size: int, where: Path) -> GGUFVocab:
    model = tokenizer["model"]
    scores = _merge_ranked_scores(tokenizer)
    unreachable = -float(len(model.get("merges", [])) + 1)
    unk = model.get("unk_token")
    tokens, types, token_scores = [], [], []
    for token_id, text, added in _padded(_id_to_token(tokenizer, vocab_size, where), vocab_size):
        tokens.append((text if text is not None else f"[PAD{token_id}]").encode("utf-8"))
        if text is None:
            types.append(UNUSED)
            token_scores.append(-1000.0)
        elif added is not None:
            types.append(CONTROL if added.get("special") else USER_DEFINED)
            token_scores.append(-1000.0)
        elif text == unk:
            types.append(UNKNOWN)
            token_scores.append(-1000.0)
        elif re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            types.append(BYTE)
            token_scores.append(0.0)
        else:
            types.append(NORMAL)
            # single characters are never the result of a merge; their score is never consulted
            token_scores.append(scores.get(text, 0.0 if len(text) == 1 else unreachable))
    return GGUFVocab("llama", "default", tokens, types, token_scores, add_space_prefix=_space_prefix(tokenizer))


def _sentencepiece_model_vocab(folder: Path, vocab_size: int) -> GGUFVocab:
    import gguf

    vocab = gguf.SentencePieceVocab(folder)
    tokens, scores, types = [], [], []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(int(kind))
    if len(tokens) > vocab_size:
        raise UserError(f"{folder}: the tokenizer has {len(tokens)} tokens but the model only {vocab_size}")
    for token_id in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{token_id}]".encode())
        scores.append(-1000.0)
        types.append(UNUSED)
    # a bare tokenizer.model is the Llama 2 / Mistral layout, which prepends the '▁'
    return GGUFVocab("llama", "default", tokens, types, scores, add_space_prefix=True)


def read_vocab(folder: Path, vocab_size: int) -> GGUFVocab:
    """Tokens, types and scores of `folder`'s tokenizer, padded to the model's `vocab_size`."""
    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.exists():
        try:
            tokenizer = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{tokenizer_json}: unreadable ({exc})") from None
        model = tokenizer.get("model", {})
        decoder = (tokenizer.get("decoder") or {}).get("type")
        if model.get("type") == "BPE" and not model.get("byte_fallback") and decoder == "ByteLevel":
            return _byte_level_vocab(tokenizer, vocab_size, tokenizer_json)
        if model.get("type") == "BPE" and model.get("byte_fallback"):
            return _sentencepiece_bpe_vocab(tokenizer, vocab_size, tokenizer_json)
        if not (folder / "tokenizer.model").exists():
            raise UserError(
                f"{tokenizer_json}: a {model.get('type')} tokenizer is neither byte-level BPE nor "
                "SentencePiece-style BPE, which are the two styles this converter writes"
            )
    if (folder / "tokenizer.model").exists():
        return _sentencepiece_model_vocab(folder, vocab_size)
    raise UserError(f"{folder}: no tokenizer.json or tokenizer.model (save the tokenizer with the model)")


def add_vocab(writer, folder: Path, vocab_size: int) -> GGUFVocab:
    """Write tokenizer metadata, special token ids and the chat template (Tulu when the folder has none)."""
    import gguf

    vocab = read_vocab(folder, vocab_size)
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if vocab.scores is not None:
        writer.add_token_scores(vocab.scores)
    if vocab.add_space_prefix is not None:
        writer.add_add_space_prefix(vocab.add_space_prefix)
    special = gguf.SpecialVocab(folder, load_merges=vocab.merges, n_vocab=len(vocab.tokens))
    if special.chat_template is None:
        special.chat_template = tulu_chat_template_jinja()
    special.add_to_gguf(writer, quiet=True)
    return vocab
