"""`serve` with what clients send beyond messages and temperature, against a real server on the embedded
gemma x rules: structured outputs through the `openai` client's parse, logit_bias, n, penalties, the
operations endpoints (/metrics read by Prometheus' own parser, /tokenize, /detokenize, timings), the
request shape lm-evaluation-harness's `local-completions` sends for a loglikelihood, and bad input."""

from __future__ import annotations

import json

import pytest
from test_serve import client, start_server, stop

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pydantic = pytest.importorskip("pydantic")
jsonschema = pytest.importorskip("jsonschema")

PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer", "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


class Person(pydantic.BaseModel):
    name: str
    age: int


@pytest.fixture(scope="module")
def server():
    process, url = start_server("--model", "poe=default+poe", "--parallel", "4", "--ctx", "1024")
    yield url
    stop(process)


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=300)


def chat(url: str, prompt: str, **options) -> dict:
    body = {"model": "poe", "messages": [{"role": "user", "content": prompt}], "temperature": 0, **options}
    response = post(url, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    return response.json()


def tokens_of(url: str, text: str) -> list[int]:
    return post(url, "/tokenize", {"content": text}).json()["tokens"]


@pytest.mark.slow
def test_the_openai_clients_structured_parse_returns_a_valid_object(server):
    completion = client(server).chat.completions.parse(
        model="poe",
        messages=[{"role": "user", "content": "Describe a person as JSON with a name and an age."}],
        response_format=Person,
        temperature=0,
        max_tokens=60,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Person) and choice.message.parsed.name
    # json_schema with limits, json_object, and a GBNF grammar on the raw-text endpoint
    reply = chat(
        server,
        "Describe a person as JSON.",
        max_tokens=60,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "strict": True, "schema": PERSON_SCHEMA},
        },
    )
    jsonschema.validate(json.loads(reply["choices"][0]["message"]["content"]), PERSON_SCHEMA)
    # any JSON object: the small base model fills one until its budget, so check what it did write
    anything = chat(server, "Give a person as JSON.", max_tokens=24, response_format={"type": "json_object"})
    text = anything["choices"][0]["message"]["content"]
    assert text.startswith("{") and text.lstrip("{ \n").startswith('"')
    body = {"model": "poe", "prompt": "Is the sky blue? Answer:", "max_tokens": 8, "temperature": 0}
    answer = post(server, "/v1/completions", body | {"grammar": 'root ::= " " ("yes" | "no") "."'}).json()
    assert answer["choices"][0]["text"] in (" yes.", " no.") and answer["choices"][0]["finish_reason"] == "stop"


@pytest.mark.slow
def test_a_grammar_that_admits_nothing_ends_the_reply_with_a_note(server):
    reply = chat(server, "Say something.", max_tokens=8, grammar='start: "x" NONE\nNONE: /a/ & /b/')
    choice = reply["choices"][0]
    assert choice["message"]["content"] == "x" and choice["finish_reason"] == "stop"
    assert "admits no token" in choice["ijt_note"]


@pytest.mark.slow
def test_logit_bias_keeps_a_token_out_or_forces_it(server):
    prompt = "Name three colours."
    plain = chat(server, prompt, max_tokens=24)["choices"][0]["message"]["content"]
    used = set(tokens_of(server, plain))
    banned = chat(server, prompt, max_tokens=24, logit_bias={str(t): -100 for t in used})
    assert not used & set(tokens_of(server, banned["choices"][0]["message"]["content"]))
    cat = tokens_of(server, " cat")
    assert len(cat) == 1
    forced = chat(server, prompt, max_tokens=5, temperature=0.9, seed=3, logit_bias={str(cat[0]): 100})
    assert forced["choices"][0]["message"]["content"] == " cat" * 5
    # penalties change a greedy reply; the product is still one distribution
    penalised = chat(server, prompt, max_tokens=24, frequency_penalty=2.0, presence_penalty=2.0)
    assert penalised["choices"][0]["message"]["content"] != plain


@pytest.mark.slow
def test_n_gives_choices_seeded_apart(server):
    reply = chat(server, "Write a sentence about rain.", max_tokens=16, temperature=0.9, seed=7, n=3)
    texts = [c["message"]["content"] for c in reply["choices"]]
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2] and len(set(texts)) == 3
    # choice i is the reply a single request seeded seed + i gets
    alone = chat(server, "Write a sentence about rain.", max_tokens=16, temperature=0.9, seed=8)
    assert alone["choices"][0]["message"]["content"] == texts[1]
    assert 3 <= reply["usage"]["completion_tokens"] <= 3 * 16  # the choices together, each within its budget
    timings = reply["timings"]
    assert timings["prompt_n"] == reply["usage"]["prompt_tokens"] and timings["predicted_ms"] > 0


@pytest.mark.slow
def test_bad_input_gets_a_400_naming_the_field_and_the_server_keeps_serving(server):
    hi = {"model": "poe", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    cases = {
        "tools": {"tools": [{"type": "function", "function": {"name": "f"}}]},
        "n": {"n": 17},
        "logit_bias": {"logit_bias": {"not-a-token": 5}},
        "grammar": {"grammar": 'root ::= ("a"'},
        "response_format": {
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}
        },
        "presence_penalty": {"presence_penalty": 2.5},
        "min_p": {"min_p": 1.5},
    }
    for field, extra in cases.items():
        response = post(server, "/v1/chat/completions", hi | extra)
        assert response.status_code == 400, (field, response.text)
        error = response.json()["error"]
        assert error["param"].startswith(field) and error["message"].startswith(field), error
    too_big = post(server, "/v1/chat/completions", hi | {"logit_bias": {"262144": 1}})
    assert too_big.status_code == 400 and "logit_bias" in too_big.json()["error"]["message"]
    assert chat(server, "hi", max_tokens=4)["choices"][0]["message"]["content"]


@pytest.mark.slow
def test_metrics_parse_and_count_what_was_served(server):
    from prometheus_client.parser import text_string_to_metric_families

    chat(server, "Name three colours.", max_tokens=8)
    post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 99})
    response = httpx.get(f"{server}/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    value = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families.values()
        for sample in family.samples
    }
    assert value[("ijt_requests_total", (("endpoint", "chat"), ("model", "poe")))] >= 1
    assert value[("ijt_completion_tokens_total", (("model", "poe"),))] >= 8
    assert value[("ijt_time_to_first_token_seconds_count", (("model", "poe"),))] >= 1
    assert value[("ijt_inter_token_seconds_count", (("model", "poe"),))] >= 7
    assert value[("ijt_refused_requests_total", (("status", "400"),))] >= 1
    assert value[("ijt_slots", (("model", "poe"),))] == 4
    assert ("ijt_queue_depth", (("model", "poe"),)) in value and ("ijt_slots_busy", (("model", "poe"),)) in value


@pytest.mark.slow
def test_tokenize_with_pieces_and_detokenize(server):
    text = "Hello wörld <start_of_turn>"
    pieces = post(server, "/tokenize", {"content": text, "with_pieces": True}).json()["tokens"]
    assert "".join(p["piece"] for p in pieces) == text and pieces[-1]["piece"] == "<start_of_turn>"
    ids = [p["id"] for p in pieces]
    assert post(server, "/tokenize", {"content": text}).json()["tokens"] == ids
    assert post(server, "/detokenize", {"tokens": ids[:-1]}).json()["content"] == "Hello wörld "
    assert post(server, "/detokenize", {"tokens": [-1]}).status_code == 400


@pytest.mark.slow
def test_the_loglikelihood_request_lm_eval_sends(server):
    """lm-evaluation-harness's local-completions (tokenized_requests=False) scores context + continuation
    with one request: the prompt as a list of one string, echo, logprobs 1, max_tokens 1, temperature 0
    and a seed; the continuation's logprob is the sum of the echoed token_logprobs past the context."""
    context, continuation = "The capital of France is", " Paris"
    body = {
        "model": "poe",
        "prompt": [context + continuation],
        "temperature": 0,
        "max_tokens": 1,
        "logprobs": 1,
        "seed": 1234,
        "echo": True,
    }
    choice = post(server, "/v1/completions", body).json()["choices"][0]
    logprobs = choice["logprobs"]
    assert choice["text"].startswith(context + continuation)
    n_context = len(tokens_of(server, context))
    scored = logprobs["token_logprobs"][n_context:-1]  # lm-eval drops the one generated token
    assert len(scored) == len(tokens_of(server, continuation)) and all(lp <= 0 for lp in scored)
    assert logprobs["tokens"][n_context:-1] == [" Paris"]
    # the same score with max_tokens 0 (nothing generated)
    zero = post(server, "/v1/completions", body | {"max_tokens": 0}).json()["choices"][0]["logprobs"]
    assert zero["token_logprobs"][n_context:] == scored
