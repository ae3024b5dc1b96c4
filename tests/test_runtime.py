"""Decoding on the real embedded GGUFs: stopping, role tags, sampling, PoE behaviour, scoring."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from ijt_local.data.home import data_home
from ijt_local.rules.expert import load_rules
from ijt_local.runtime.batch import _partial_tag_suffix, batch_decoder, generate_one
from ijt_local.runtime.session import SamplingParams

VAL = data_home() / "val" / "val.jsonl"


def val_instructions(n):
    if not VAL.exists():  # .ci/run stops before the tests when the data home is missing, so CI never skips here
        pytest.skip("needs the data home's val set (ijt-local data fetch val)")
    return [json.loads(line)["instruction"] for line in VAL.read_text().splitlines()[:n]]


def ask(text):
    return [{"role": "user", "content": text}]


def reply(session, messages, **options):
    """One reply decoded alone, in llama.cpp's one-row steps (chat's `--fast`)."""
    return generate_one(session, messages, exact=False, **options)


@pytest.mark.slow
def test_greedy_poe_on_val_instructions_stops_on_its_own(gemma_session):
    rules = load_rules()
    for instruction in val_instructions(3):
        # role tags do not end the reply here: only an end-of-text token can, so "stop" means the rules ended it
        generation = reply(gemma_session, ask(instruction), max_tokens=400, rules=rules, stop_at_role_tags=False)
        assert generation.finish_reason == "stop", instruction
        assert not any(tag in generation.text for tag in gemma_session.template.role_tags)
        assert generation.text.strip()


@pytest.mark.slow
def test_base_model_without_poe_echoes_or_continues(gemma_session):
    # the paper's base-model behaviour: it restates the instruction or writes the next role tag (kept in the
    # text here, so the reply shows it); with the paper's rules neither happens on the first instruction
    role_tags = gemma_session.template.role_tags
    for instruction in val_instructions(3):
        generation = reply(gemma_session, ask(instruction), max_tokens=64, stop_at_role_tags=False)
        head = " ".join(instruction.split()[:4])
        echoes = generation.text.lstrip().startswith(head)
        continues = any(tag in generation.text for tag in role_tags)
        assert echoes or continues, (instruction, generation.text)


@pytest.mark.slow
def test_role_tag_ends_the_reply_and_is_cut(gemma_session):
    # a base model continues the dialogue; the reply must stop before the next role tag
    messages = [
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "Say hi."},
    ]
    generation = reply(gemma_session, messages, max_tokens=80)
    uncut = reply(gemma_session, messages, max_tokens=80, stop_at_role_tags=False)
    tag = next(tag for tag in gemma_session.template.role_tags if tag in uncut.text)  # it does play the user
    assert uncut.text.startswith(generation.text + tag) or uncut.text.startswith(generation.text.rstrip() + tag)
    assert generation.finish_reason == "stop" and tag not in generation.text


@pytest.mark.slow
def test_streamed_text_equals_the_reply(real_session):
    pieces = []
    generation = reply(real_session, ask("List three fruits."), max_tokens=40, on_text=pieces.append)
    assert "".join(pieces) == generation.text


@pytest.mark.slow
def test_fixed_seed_gives_the_same_text(real_session):
    sampling = SamplingParams(temperature=0.9, top_p=0.95, top_k=50, seed=7)
    a = reply(real_session, ask("Tell me a story."), max_tokens=30, sampling=sampling)
    b = reply(real_session, ask("Tell me a story."), max_tokens=30, sampling=sampling)
    c = reply(
        real_session,
        ask("Tell me a story."),
        max_tokens=30,
        sampling=SamplingParams(temperature=0.9, top_p=0.95, top_k=50, seed=8),
    )
    assert a.text == b.text
    assert a.tokens != c.tokens


@pytest.mark.slow
def test_a_prompt_gives_the_same_tokens_after_another_prompt(smollm_session):
    first = reply(smollm_session, ask("What is 2+2?"), max_tokens=20)
    reply(smollm_session, ask("Name a color."), max_tokens=5)
    again = reply(smollm_session, ask("What is 2+2?"), max_tokens=20)
    assert first.tokens == again.tokens


@pytest.mark.slow
def test_max_tokens_gives_length(smollm_session):
    generation = reply(smollm_session, ask("Write a long essay about rivers."), max_tokens=5)
    assert generation.finish_reason == "length" and generation.n_tokens == 5


@pytest.mark.slow
def test_instruct_model_stops_at_eos(smollm_session):
    generation = reply(smollm_session, ask("What is the capital of France?"), max_tokens=100)
    assert generation.finish_reason == "stop"
    assert "Paris" in generation.text


@pytest.mark.slow
def test_score_response_matches_logits(smollm_session):
    messages = ask("Name a fruit.")
    score = smollm_session.score_response(messages, "An apple.")
    prompt = smollm_session.prompt_tokens(messages)
    response = smollm_session.tokenize("An apple.", special=False)
    logits = smollm_session.logits(prompt + response).astype(np.float64)
    expected = 0.0
    for i, token in enumerate(response):
        row = logits[len(prompt) - 1 + i]
        expected += row[token] - np.log(np.exp(row - row.max()).sum()) - row.max()
    assert score.n_tokens == len(response)
    assert score.logprob_sum == pytest.approx(expected, abs=1e-3)


@pytest.mark.slow
def test_poe_score_prefers_what_the_rules_favour(gemma_session):
    messages = ask("Name a fruit.")
    rules = load_rules("uniform")
    # `I` is pushed down by the rules, so a reply starting with it loses more under PoE
    plain_i = gemma_session.score_response(messages, "I like apples.")
    poe_i = gemma_session.score_response(messages, "I like apples.", rules=rules)
    plain_a = gemma_session.score_response(messages, "Apples are nice.")
    poe_a = gemma_session.score_response(messages, "Apples are nice.", rules=rules)
    assert poe_i.logprob_sum < plain_i.logprob_sum
    assert (poe_i.logprob_sum - plain_i.logprob_sum) < (poe_a.logprob_sum - plain_a.logprob_sum)


def test_partial_tag_suffix():
    tags = ("<|user|>", "<|assistant|>")
    assert _partial_tag_suffix("hello <|us", tags) == 4
    assert _partial_tag_suffix("hello <", tags) == 1
    assert _partial_tag_suffix("hello", tags) == 0


def test_default_threads_leave_the_cores_other_processes_keep_busy():
    # two llama.cpp threads on 2 cores with one taken run at half the speed of one (README, Performance)
    import os
    import subprocess
    import sys

    from ijt_local.runtime.session import default_threads

    cores = len(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert default_threads() <= max(1, cores - 1)
    finally:
        spinner.kill()
        spinner.wait()


def test_busy_cores_leave_out_this_process_s_own_work():
    # a session re-counting the load between decodes must not count its own (still spinning) threads
    import threading
    import time

    from ijt_local.runtime.session import _busy_cores

    baseline = _busy_cores(0.3)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        assert _busy_cores(0.3) < baseline + 0.5
    finally:
        stop.set()
        spinner.join()


@pytest.mark.slow
def test_a_session_moves_its_contexts_to_the_free_cores_unless_threads_were_given(monkeypatch):
    from ijt_local.runtime import session as runtime
    from ijt_local.runtime.session import Session

    monkeypatch.setattr(runtime, "THREAD_CHECK_SECONDS", 0.0)
    following, fixed = (
        Session("smollm2-135m-instruct", n_ctx=512),
        Session("smollm2-135m-instruct", n_ctx=512, threads=1),
    )
    try:
        for session in (following, fixed):  # both contexts live before the load changes
            list(batch_decoder(session, 2).generate([ask("Hi."), ask("Bye.")], max_tokens=2))
        free = 2 if following.threads == 1 else 1  # whatever it started with, the load now says otherwise
        monkeypatch.setattr(runtime, "default_threads", lambda: free)
        for session in (following, fixed):
            session.next_token_logprobs(session.tokenize("Name a colour."))  # a decode in the main context
        assert following.threads == free
        assert following.context.threads() == free
        assert batch_decoder(following, 2).context.threads() == free
        assert fixed.threads == 1
        assert fixed.context.threads() == 1
        assert batch_decoder(fixed, 2).context.threads() == 1
    finally:
        following.close()
        fixed.close()


@pytest.mark.slow
def test_next_token_logprobs_keep_a_shared_prefix_and_match_a_fresh_prefill(smollm_session):
    import numpy as np

    session = smollm_session
    head = session.prompt_tokens([{"role": "user", "content": "Which is better, (a) red or (b) blue?"}])
    first, second = head + session.tokenize("The better one is (a"), head + session.tokenize("The better one is (b")
    session.next_token_logprobs(session.tokenize("Something else entirely."))
    fresh = session.next_token_logprobs(second)  # nothing shared with the cache: decoded from scratch
    session.next_token_logprobs(first)
    reused = session.next_token_logprobs(second)  # keeps the cells of `head` + "The better one is ("
    assert np.allclose(np.exp(reused), np.exp(fresh), atol=1e-4)
    assert reused.argmax() == fresh.argmax()


@pytest.mark.slow
def test_token_pieces_are_right_when_two_threads_ask_at_once(gemma_session):
    """serve's engine thread decodes reply tokens while its request thread writes logprobs tokens; a piece
    buffer shared between them gave one thread the other's bytes (a reply read "< cover>" for "<script>")."""
    ids = list(range(1000, 3000))
    expected = {token: gemma_session.token_bytes(token) for token in ids}
    wrong = []

    def read(order):
        for _ in range(5):
            wrong.extend(token for token in order if gemma_session.token_bytes(token) != expected[token])

    threads = [threading.Thread(target=read, args=(order,)) for order in (ids, ids[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
