"""Tokenization with loss labels, batching, and the chunked head loss, on a real tokenizer and tiny models."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from ijt_local.errors import UserError  # noqa: E402
from ijt_local.prompts import TULU  # noqa: E402
from ijt_local.train.collate import PadToLongest  # noqa: E402
from ijt_local.train.data import IGNORE, special_prefix, tokenize_conversation, tokenize_file  # noqa: E402
from ijt_local.train.loss import labelled_positions, linear_cross_entropy_sum  # noqa: E402
from ijt_local.train.trainer import labelled_loss_sum  # noqa: E402

CONVERSATION = [
    {"role": "user", "content": "Name a prime number."},
    {"role": "assistant", "content": "Seven is prime.\n\nSo is 11."},
    {"role": "user", "content": "And an even one?"},
    {"role": "assistant", "content": "Two, the only even prime."},
]


@pytest.fixture(scope="module")
def tokenizer():
    from tiny_models import load_tokenizer

    return load_tokenizer()


def labelled_runs(ids, labels):
    """The labelled positions as runs of consecutive token ids."""
    runs, current = [], []
    for token, label in zip(ids, labels):
        if label == IGNORE:
            if current:
                runs.append(current)
            current = []
        else:
            assert label == token
            current.append(token)
    return runs + ([current] if current else [])


def test_labels_are_exactly_the_responses_and_eos(tokenizer):
    ids, labels = tokenize_conversation(CONVERSATION, tokenizer)
    runs = labelled_runs(ids, labels)
    eos = tokenizer.eos_token
    assert [tokenizer.decode(run) for run in runs] == [
        "Seven is prime.\n\nSo is 11." + eos,
        "Two, the only even prime." + eos,
    ]
    assert all(run[-1] == tokenizer.eos_token_id for run in runs)


def test_prompt_tokens_are_what_the_runtime_sees(tokenizer):
    """Everything before the first label is the template-rendered prompt, tokenized as one string."""
    ids, labels = tokenize_conversation(CONVERSATION[:2], tokenizer)
    first = labels.index(next(label for label in labels if label != IGNORE))
    prompt = TULU.render(CONVERSATION[:1])
    assert prompt == "<|user|>\nName a prime number.\n<|assistant|>\n"
    assert ids[:first] == special_prefix(tokenizer) + tokenizer(prompt, add_special_tokens=False)["input_ids"]


def test_full_text_follows_the_template(tokenizer):
    ids, _ = tokenize_conversation(CONVERSATION, tokenizer)
    assert tokenizer.decode(ids) == TULU.render(CONVERSATION, eos=tokenizer.eos_token).rstrip("\n")


def test_response_variant_has_no_instruction_tokens(tokenizer):
    response_only = [m for m in CONVERSATION if m["role"] == "assistant"][:1]
    ids, labels = tokenize_conversation(response_only, tokenizer)
    text = tokenizer.decode(ids)
    assert text == "<|assistant|>\nSeven is prime.\n\nSo is 11." + tokenizer.eos_token
    assert "<|user|>" not in text and "prime number" not in text
    unlabelled = [t for t, label in zip(ids, labels) if label == IGNORE]
    assert tokenizer.decode(unlabelled) == "<|assistant|>\n"


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_tokenize_file_accepts_the_three_row_shapes(tmp_path, tokenizer):
    path = write_rows(
        tmp_path / "mixed.jsonl",
        [
            {"messages": CONVERSATION[:2]},
            {"instruction": "Name a prime number.", "output": "Seven is prime.\n\nSo is 11."},
            {"prompt": "Name a prime number.", "completion": "Seven is prime.\n\nSo is 11."},
        ],
    )
    tokenized = tokenize_file(path, tokenizer, max_seq_len=256)
    assert len(tokenized.examples) == 3
    assert tokenized.examples[0] == tokenized.examples[1] == tokenized.examples[2]
    assert len(tokenized.sha256) == 64


def test_truncation_and_dropped_rows(tmp_path, tokenizer):
    long_prompt = "word " * 100
    path = write_rows(
        tmp_path / "t.jsonl",
        [
            {"instruction": long_prompt, "output": "short"},  # the response starts beyond 32 tokens: dropped
            {"instruction": "hi", "output": "answer " * 100},  # cut inside the response: kept
        ],
    )
    tokenized = tokenize_file(path, tokenizer, max_seq_len=32)
    assert tokenized.stats["dropped"] == 1 and tokenized.stats["truncated"] == 1
    assert [len(e["input_ids"]) for e in tokenized.examples] == [32]
    with pytest.raises(UserError, match="--max-seq-len 8 is too short"):
        tokenize_file(write_rows(tmp_path / "u.jsonl", [{"instruction": long_prompt, "output": "x"}]), tokenizer, 8)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "no training rows"),
        ('{"messages": []}\n{"oops"\n', r"bad.jsonl:2: malformed JSON"),
        ("[1, 2]\n", "bad.jsonl:1: expected a JSON object"),
        ('{"instruction": "no answer"}\n', "bad.jsonl:1: no assistant turn"),
        ('{"text": "x"}\n', "bad.jsonl:1: row has none of"),
        ('\n\n{"messages": [{"role": "user", "content": "hi"}]}\n', "bad.jsonl:3: no assistant turn"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, tokenizer, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        tokenize_file(path, tokenizer, max_seq_len=64)


def test_pad_to_longest():
    batch = PadToLongest(pad_token_id=0)(
        [{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("train_weight", [False, True])
def test_chunked_head_loss_matches_full_cross_entropy(softcap, train_weight):
    torch.manual_seed(0)
    hidden = torch.randn(45, 24, requires_grad=True)
    weight = (torch.randn(300, 24) * 0.3).requires_grad_(train_weight)
    targets = torch.randint(0, 300, (45,))
    loss = linear_cross_entropy_sum(hidden, weight, targets, softcap=softcap, chunk=7)
    logits = hidden @ weight.T
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    reference = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    inputs = [hidden, weight] if train_weight else [hidden]
    ours = torch.autograd.grad(loss * 0.3, inputs)
    theirs = torch.autograd.grad(reference * 0.3, inputs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_labelled_positions_shift():
    hidden = torch.arange(2 * 4, dtype=torch.float32).reshape(2, 4, 1)
    labels = torch.tensor([[IGNORE, IGNORE, 7, 8], [IGNORE, 5, IGNORE, IGNORE]])
    rows, targets = labelled_positions(hidden, labels)
    assert rows.flatten().tolist() == [1.0, 2.0, 4.0]  # the positions before each label
    assert targets.tolist() == [7, 8, 5]


@pytest.mark.parametrize("make", ["make_tiny_llama", "make_tiny_gemma3"])
def test_model_loss_equals_transformers_loss(tmp_path, tokenizer, make):
    """Our decoder + chunked head gives the loss transformers computes from full logits."""
    import tiny_models
    from transformers import AutoModelForCausalLM

    folder = getattr(tiny_models, make)(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rows = [CONVERSATION, CONVERSATION[:2], [CONVERSATION[3]]]
    batch = PadToLongest(tokenizer.pad_token_id)(
        [dict(zip(("input_ids", "labels"), tokenize_conversation(r, tokenizer))) for r in rows]
    )
    with torch.no_grad():
        total, count = labelled_loss_sum(model, batch, chunk=5)
        reference = model(**batch).loss
    assert count == int((batch["labels"][:, 1:] != IGNORE).sum())
    assert (total / count).item() == pytest.approx(reference.item(), rel=1e-4)
