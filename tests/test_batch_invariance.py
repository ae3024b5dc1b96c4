"""One prompt, one reply: a reply depends on the model, rules, messages, sampling and seed, never on the
batch width, its neighbours, their order, refills, or how its prompt reached the KV cache (rows.py).
On gemma-3-270m Q4_K_M, llama.cpp's CPU kernels give different logits for 1-3, 4-7 and 8+ rows a call
(the probe, tests/test_row_probe.py), and near-ties in its greedy text show it within a few dozen tokens."""

from __future__ import annotations

import numpy as np
import pytest
from test_runtime import ask, val_instructions

from ijt_local.rules.expert import load_rules
from ijt_local.runtime.batch import BatchDecoder, batch_decoder, generate_all
from ijt_local.runtime.conversation import generate_reply
from ijt_local.runtime.rows import RowPlan
from ijt_local.runtime.session import SamplingParams, Session


def texts(session, conversations, width, **options):
    replies = dict(generate_all(session, conversations, width, **options))
    return [replies[i].tokens for i in range(len(conversations))]


@pytest.mark.slow
@pytest.mark.parametrize(
    "sampling", [None, SamplingParams(temperature=0.8, top_p=0.95, seed=11)], ids=["greedy", "seeded"]
)
def test_same_reply_at_any_width_and_in_any_order(gemma_session, sampling):
    conversations = [ask(text) for text in val_instructions(7)]
    options = dict(max_tokens=48, rules=load_rules(), sampling=sampling)
    narrow = texts(gemma_session, conversations, 2, **options)  # 2 rows a step, topped up to 8
    wide = texts(gemma_session, conversations, 7, **options)  # 7 rows, topped up to 8, then draining
    reordered = texts(gemma_session, conversations[::-1], 5, **options)[::-1]  # other neighbours, refills
    assert wide == narrow
    assert reordered == narrow


@pytest.mark.slow
def test_same_reply_at_widths_16_and_32_as_at_8(gemma_session):
    # 16 and 32 rows a step while all run. The base model alone ends its replies at a role tag after 13 to 24
    # tokens, so slots refill and drain through many row counts (each topped up to whole row groups).
    conversations = [ask(text) for text in val_instructions(32)]
    at_8 = texts(gemma_session, conversations, 8, max_tokens=24)
    at_16 = texts(gemma_session, conversations, 16, max_tokens=24)
    at_32_reversed = texts(gemma_session, conversations[::-1], 32, max_tokens=24)[::-1]
    assert len({len(tokens) for tokens in at_8}) > 4  # replies end at different steps
    assert at_16 == at_8
    assert at_32_reversed == at_8


@pytest.mark.slow
def test_a_schema_reply_is_the_same_alone_and_in_a_batch_of_16(gemma_session):
    """The grammar is a per-sequence expert: with a JSON schema (and the rules, a bias and penalties) a
    reply is the same decoded alone and among 15 others, and it parses and validates."""
    jsonschema = pytest.importorskip("jsonschema")
    import json

    from ijt_local.runtime.grammar import json_schema_grammar
    from ijt_local.runtime.scores import RequestScores

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer", "maximum": 120}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    scores = RequestScores.make({236764: -2.0}, 0.3, 0.2, json_schema_grammar(gemma_session, schema))
    conversations = [ask(f"Describe person number {i} as JSON.") for i in range(15)]
    conversations.insert(5, ask("Give me a person as a JSON object with a name and an age."))
    options = dict(max_tokens=48, rules=load_rules(), scores=scores)
    alone = texts(gemma_session, conversations[5:6], 1, exact=True, **options)[0]
    batch = texts(gemma_session, conversations, 16, **options)
    assert batch[5] == alone
    replies = [gemma_session.detokenize(tokens) for tokens in batch]
    for reply in replies:
        jsonschema.validate(json.loads(reply), schema)


@pytest.mark.slow
def test_a_lone_exact_reply_is_the_batched_reply(gemma_session):
    conversations = [ask(text) for text in val_instructions(3)]
    rules = load_rules()
    batched = texts(gemma_session, conversations, 3, max_tokens=48, rules=rules)
    one_at_a_time = texts(gemma_session, conversations, 1, exact=True, max_tokens=48, rules=rules)
    streamed = []
    chat = generate_reply(gemma_session, conversations[0], rules, exact=True, max_tokens=48, on_text=streamed.append)
    assert one_at_a_time == batched
    assert chat.tokens == batched[0] and "".join(streamed) == chat.text


@pytest.mark.slow
def test_a_judge_prompt_gives_the_same_numbers_with_or_without_a_reused_prefix(gemma_session):
    shared = "<|user|>\nWhich reply is better? Question: why is the sky blue?\n"
    first = gemma_session.tokenize(shared + "Reply A: scattering.\nReply B: the sea.\n<|assistant|>\n")
    second = gemma_session.tokenize(shared + "Reply A: the sea.\nReply B: scattering.\n<|assistant|>\n")
    gemma_session.next_token_logprobs(first)
    reused = gemma_session.next_token_logprobs(second)  # keeps the shared prefix's cells
    fresh = gemma_session.next_token_logprobs(second, reuse_prefix=False)
    assert np.array_equal(reused, fresh)


@pytest.mark.slow
def test_a_prompt_gives_the_same_logits_however_it_is_cut_into_calls():
    tokens_per_call = []
    for n_batch in (512, 12):  # one call, or calls of 12 tokens with an overlapping last one
        session = Session("default", n_ctx=512, n_batch=n_batch)
        tokens = session.prompt_tokens(ask(" ".join(val_instructions(3))))
        tokens_per_call.append(session.next_token_logprobs(tokens, reuse_prefix=False))
        session.close()
    assert len(tokens) > 40
    assert np.array_equal(*tokens_per_call)


@pytest.mark.slow
@pytest.mark.parametrize("one_row_steps", [False, True], ids=["batch-invariant", "fast"])
def test_a_conversation_turn_is_the_same_with_or_without_the_cells_of_earlier_turns(gemma_session, one_row_steps):
    # a finished reply's prompt cells stay in its slot, and the next turn decodes only what follows them
    rules = load_rules()
    decoder = batch_decoder(gemma_session, 1, one_row_steps)
    decoder.clear()

    def answer(messages):
        [(_, generation)] = decoder.generate([messages], max_tokens=40, rules=rules)
        return generation

    first = ask("Name a large city in Japan.")
    follow_up = first + [
        {"role": "assistant", "content": answer(first).text},
        {"role": "user", "content": "What is it famous for?"},
    ]
    reused = decoder.reused_prompt_tokens
    continued = answer(follow_up)  # its slot holds turn 1's prompt
    plan = decoder.plan
    assert decoder.reused_prompt_tokens - reused >= len(gemma_session.prompt_tokens(first)) - plan.prompt_call_rows(1)
    decoder.clear()
    reused = decoder.reused_prompt_tokens
    fresh = answer(follow_up)
    assert decoder.reused_prompt_tokens == reused
    assert continued.tokens == fresh.tokens


@pytest.mark.parametrize("plan", [RowPlan(4, 8, 4, 8), RowPlan(1, 1, 1, 8), RowPlan(8, 8, 2, 4)], ids=str)
def test_every_call_is_whole_row_groups(plan):
    group, least = plan.prompt_group, plan.prompt_min
    assert all(
        plan.step_rows(n) % plan.step_group == 0
        and n <= plan.step_rows(n) <= max(plan.step_min, n + plan.step_group - 1)
        for n in range(1, 40)
    )
    for cached in range(0, 40, 3):
        for total in range(least, 1100, 7):
            ranges = plan.prefill_ranges(min(cached, total), total, 512)
            assert ranges[-1][1] == total and ranges[0][0] <= cached
            assert all((end - start) % group == 0 and least <= end - start <= 512 for start, end in ranges)
            filled = ranges[0][0]  # the caller keeps the cells before the first range
            for start, end in ranges:
                assert start <= filled  # no gap: a range may go back over decoded tokens, never skip one
                filled = end
    assert plan.prefill_ranges(0, least - 1, 512) == [(0, least - 1)]  # padded to prompt_min by the caller
    assert len(plan.prompt_rows(list(range(20)), 0, least - 1, 0, True)) == least


@pytest.mark.slow
def test_prompts_sharing_a_long_prefix_copy_its_cells_and_keep_their_replies(gemma_session):
    system = "You are a careful assistant. " * 12  # about 70 tokens every prompt shares
    conversations = [
        [{"role": "system", "content": system}, {"role": "user", "content": text}] for text in val_instructions(4)
    ]
    conversations.append(conversations[0])  # a second choice of the same prompt
    alone = texts(gemma_session, conversations, 1, exact=True, max_tokens=24)
    decoder = batch_decoder(gemma_session, 5)
    reused = decoder.reused_prompt_tokens
    together = texts(gemma_session, conversations, 5, max_tokens=24)
    assert decoder.reused_prompt_tokens - reused >= 4 * 60  # each later prompt copied the shared cells
    assert together == alone


@pytest.mark.slow
def test_a_later_call_starts_from_the_prompt_cells_a_finished_sequence_kept(gemma_session):
    # requests under one system prompt arriving one after another: each starts from the cells the last kept
    system = "You are a careful assistant. " * 12  # about 70 tokens every prompt shares
    conversations = [
        [{"role": "system", "content": system}, {"role": "user", "content": text}] for text in val_instructions(3)
    ]

    def reply(decoder, conversation):
        [(_, generation)] = decoder.generate([conversation], max_tokens=24)
        return generation.tokens

    fresh = []
    for conversation in conversations:
        decoder = BatchDecoder(gemma_session, 2)
        fresh.append(reply(decoder, conversation))
        assert decoder.reused_prompt_tokens == 0
        decoder.close()
    decoder = BatchDecoder(gemma_session, 2)
    try:
        kept, reused = [], []
        for conversation in conversations:
            before = decoder.reused_prompt_tokens
            kept.append(reply(decoder, conversation))
            reused.append(decoder.reused_prompt_tokens - before)
    finally:
        decoder.close()
    assert kept == fresh
    assert reused[0] == 0 and min(reused[1:]) >= 60
