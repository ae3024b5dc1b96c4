"""`serve`'s logprobs (OpenAI's, over the product of experts, and `ijt_base_logprobs`, the base model's view)
and `/v1/completions` (raw text, legacy logprobs, echo), against a real server on the embedded gemma."""

from __future__ import annotations

import json
import math

import pytest
from test_serve import PROMPTS, client, start_server, stop

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def server():
    process, url = start_server("--model", "poe=default+poe", "--parallel", "4", "--ctx", "1024")
    yield url
    stop(process)


def chat(url: str, prompt: str, **options) -> dict:
    body = {"model": "poe", "messages": [{"role": "user", "content": prompt}], "temperature": 0, **options}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def complete(url: str, prompt: str, **options) -> dict:
    body = {"model": "poe", "prompt": prompt, "temperature": 0, **options}
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def sse(url: str, path: str, body: dict) -> list[dict]:
    chunks = []
    with httpx.stream("POST", f"{url}{path}", json={**body, "stream": True}, timeout=300) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[len("data: ") :]))
    return chunks


@pytest.mark.slow
def test_chat_logprobs_carry_the_product_and_the_base_model_beside_it(server):
    plain = chat(server, PROMPTS[0], max_tokens=40)["choices"][0]
    assert "logprobs" not in plain or plain["logprobs"] is None  # nothing computed unless asked
    choice = chat(server, PROMPTS[0], max_tokens=40, logprobs=True, top_logprobs=3)["choices"][0]
    assert choice["message"]["content"] == plain["message"]["content"]  # asking never changes the reply
    content, base = choice["logprobs"]["content"], choice["ijt_base_logprobs"]["content"]
    assert len(content) == len(base) > 0
    assert "".join(entry["token"] for entry in content) == choice["message"]["content"]
    for entry, seen in zip(content, base):
        assert len(entry["top_logprobs"]) == 3 and entry["token"] == seen["token"]
        assert entry["top_logprobs"][0]["token"] == entry["token"]  # greedy takes the product's top token
        assert entry["top_logprobs"][0]["logprob"] == pytest.approx(entry["logprob"])
        assert [t["logprob"] for t in entry["top_logprobs"]] == sorted(
            (t["logprob"] for t in entry["top_logprobs"]), reverse=True
        )
        assert entry["logprob"] <= 0 and seen["logprob"] <= 0
        assert seen["changed"] == (seen["top_logprobs"][0]["token"] != seen["token"])
        assert bytes(entry["bytes"]).decode("utf-8", errors="replace") == entry["token"]
    # the paper's rules change the base model's choice where they penalise its top token (a word of the
    # instruction, `<`, `I`): the first token here, and more later
    assert base[0]["changed"] and base[0]["top_logprobs"][0]["token"] != content[0]["token"]
    assert sum(seen["changed"] for seen in base) >= 2
    # with `start` too (ours, off by default) the first token is its `Okay` (+10 x 5), not the base model's
    opener = chat(server, PROMPTS[0], max_tokens=3, logprobs=True, ijt_rules="all")["choices"][0]
    first = opener["ijt_base_logprobs"]["content"][0]
    assert first["token"] == "Okay" and first["rule_score"] == 50.0 and first["changed"]
    # without rules there is no base view, and the logprobs are the base model's
    off = chat(server, PROMPTS[0], max_tokens=5, logprobs=True, ijt_rules="off")["choices"][0]
    assert "ijt_base_logprobs" not in off and all(e["top_logprobs"] == [] for e in off["logprobs"]["content"])


@pytest.mark.slow
def test_streamed_chat_logprobs_equal_the_whole_reply(server):
    whole = chat(server, PROMPTS[1], max_tokens=30, logprobs=True, top_logprobs=2)["choices"][0]
    chunks = sse(
        server,
        "/v1/chat/completions",
        {
            "model": "poe",
            "temperature": 0,
            "max_tokens": 30,
            "messages": [{"role": "user", "content": PROMPTS[1]}],
            "logprobs": True,
            "top_logprobs": 2,
        },
    )
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    streamed = [e for c in chunks if c["choices"][0].get("logprobs") for e in c["choices"][0]["logprobs"]["content"]]
    base = [
        e
        for c in chunks
        if c["choices"][0].get("ijt_base_logprobs")
        for e in c["choices"][0]["ijt_base_logprobs"]["content"]
    ]
    assert text == whole["message"]["content"]
    assert streamed == whole["logprobs"]["content"] and base == whole["ijt_base_logprobs"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["finish_reason"]


@pytest.mark.slow
def test_text_completion_with_echo_and_legacy_logprobs(server):
    prompt = "The capital of France is"
    plain = complete(server, prompt, max_tokens=8, ijt_rules="off")["choices"][0]
    assert plain["text"] and plain["logprobs"] is None and plain["finish_reason"] == "length"
    echoed = complete(server, prompt, max_tokens=8, ijt_rules="off", echo=True, logprobs=2)
    choice = echoed["choices"][0]
    assert choice["text"] == prompt + plain["text"]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert logprobs["text_offset"][0] == 0
    assert logprobs["text_offset"][-1] == len(choice["text"]) - len(logprobs["tokens"][-1])
    assert all(lp is not None and lp <= 0 for lp in logprobs["token_logprobs"])  # BOS predicts the first token
    assert all(len(top) <= 2 for top in logprobs["top_logprobs"])
    assert echoed["usage"]["completion_tokens"] == 8
    # scoring the prompt alone (max_tokens 0 with echo), as evaluation harnesses do: the prompt's own
    # logprobs agree with the echoed ones, and the generated tokens' with teacher-forcing them
    scored = complete(server, choice["text"], max_tokens=0, echo=True, logprobs=0)["choices"][0]
    assert scored["text"] == choice["text"]
    n = len(logprobs["tokens"])
    if scored["logprobs"]["tokens"] == logprobs["tokens"]:
        for mine, forced in zip(logprobs["token_logprobs"], scored["logprobs"]["token_logprobs"][:n]):
            assert math.isclose(mine, forced, abs_tol=0.05)
    # streamed: the same text and logprobs in pieces
    chunks = sse(
        server,
        "/v1/completions",
        {
            "model": "poe",
            "prompt": prompt,
            "temperature": 0,
            "max_tokens": 8,
            "ijt_rules": "off",
            "echo": True,
            "logprobs": 2,
        },
    )
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert [t for c in chunks for t in c["choices"][0]["logprobs"]["tokens"]] == logprobs["tokens"]
    assert [t for c in chunks for t in c["choices"][0]["logprobs"]["text_offset"]] == logprobs["text_offset"]
    # the rule expert runs on raw text too, through the openai client
    reply = client(server).completions.create(model="poe", prompt=prompt, max_tokens=8, temperature=0)
    assert reply.choices[0].text and reply.object == "text_completion"


@pytest.mark.slow
def test_a_prompt_of_token_ids_is_its_text(server):
    # evaluation harnesses (lm-eval's local-completions by default) send the prompt as the model's token ids
    text = "The capital of France is Paris"
    asked = {"model": "poe", "content": text, "add_special": True}
    tokens = httpx.post(f"{server}/tokenize", json=asked, timeout=30).json()["tokens"]
    scored = complete(server, text, max_tokens=0, echo=True, logprobs=1)["choices"][0]
    for prompt in (tokens, [tokens]):
        as_ids = complete(server, prompt, max_tokens=0, echo=True, logprobs=1)["choices"][0]
        assert as_ids["text"] == scored["text"] == text
        assert as_ids["logprobs"] == scored["logprobs"]
    reply = complete(server, text, max_tokens=8, ijt_rules="off")["choices"][0]["text"]
    assert complete(server, tokens, max_tokens=8, ijt_rules="off")["choices"][0]["text"] == reply


@pytest.mark.slow
def test_bad_completion_requests_get_one_line_4xx(server):
    def refused(body: dict, path: str = "/v1/completions") -> str:
        response = httpx.post(f"{server}{path}", json={"model": "poe", **body}, timeout=30)
        assert response.status_code == 400 or response.status_code == 404, response.text
        message = response.json()["error"]["message"]
        assert "\n" not in message and "Traceback" not in message
        return message

    assert "one prompt per request (got a list of 2)" in refused({"prompt": ["a", "b"]})
    assert "one prompt per request (got a list of 2)" in refused({"prompt": [[2, 651], [2]]})
    assert "token id 999999999 is not in the vocabulary" in refused({"prompt": [2, 999999999], "echo": True})
    assert "prompt: no tokens" in refused({"prompt": [[]]})
    assert "only with echo" in refused({"prompt": "a", "max_tokens": 0})
    assert "logprobs" in refused({"prompt": "a", "logprobs": 50})
    assert "does not fit" in refused({"prompt": "word " * 2000, "max_tokens": 10})
    assert "ijt_rules" in refused({"prompt": "a", "ijt_rules": "nonsense"})
    assert "not served here" in refused({"prompt": "a", "model": "nope"})
    assert "top_logprobs" in refused(
        {"messages": [{"role": "user", "content": "a"}], "logprobs": True, "top_logprobs": 99}, "/v1/chat/completions"
    )
    raw = httpx.post(f"{server}/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert raw.status_code == 400
