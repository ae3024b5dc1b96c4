"""`serve --allow-specs`: any SPEC over the loaded gemma per request (rules, ablations, LoRA adapters loaded
once, at most --spec-engines adapter sets kept), and one clear 4xx line for a spec that cannot run."""

from __future__ import annotations

import pytest
from gemma_lora import make_gemma_lora
from test_serve import PROMPTS, start_server, stop

httpx = pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    adapters = tmp_path_factory.mktemp("adapters")
    make_gemma_lora(adapters / "a.gguf", 1)
    make_gemma_lora(adapters / "b.gguf", 2)
    (adapters / "bad.gguf").write_bytes(b"not a gguf file")
    process, url = start_server(
        "--model",
        "poe=default+poe",
        "--parallel",
        "4",
        "--ctx",
        "1024",
        "--allow-specs",
        "--adapter-dir",
        str(adapters),
        "--spec-engines",
        "1",
    )
    yield url
    stop(process)


def reply(url: str, model: str, **options) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPTS[0]}],
        "temperature": 0,
        "max_tokens": 24,
        **options,
    }
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


@pytest.mark.slow
def test_a_request_names_any_spec_over_the_loaded_model(server):
    poe = reply(server, "poe")
    assert reply(server, "default+poe") == poe
    assert reply(server, "default") == reply(server, "poe", ijt_rules="off")
    assert reply(server, "default+poe:eos,uniform") == reply(server, "poe", ijt_rules="eos,uniform")
    assert reply(server, "default+poe", ijt_rules="off") == reply(server, "default")
    # adapters: scale 0 is the base model; a real scale changes the reply, and the same spec again (after
    # another adapter set took the only engine) gives the same reply
    assert reply(server, "default+a.gguf@0") == reply(server, "default")
    tuned = reply(server, "default+a.gguf@0.8")
    assert tuned != reply(server, "default")
    assert reply(server, "default+b.gguf") != tuned
    assert reply(server, "default+a.gguf@0.8") == tuned
    assert reply(server, "default+a.gguf@0.8+poe") != tuned
    health = httpx.get(f"{server}/health").json()
    assert len(health["spec_engines"]) == 1  # --spec-engines 1: the least recently used set was closed
    assert all(engine["running"] == 0 for engine in health["spec_engines"].values())
    assert httpx.get(f"{server}/v1/models").json()["ijt_allow_specs"] is True


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, message",
    [
        ("default+missing.gguf", "no such file"),
        ("default+../outside.gguf", "outside the adapter folder"),
        ("default+bad.gguf", "cannot load this LoRA adapter"),
        ("other+poe", "is not loaded here"),
        ("default+poe:eos,nonsense", "unknown rule"),
        ("default+what", "unknown suffix"),
    ],
)
def test_a_spec_that_cannot_run_gets_one_clear_400(server, model, message):
    response = httpx.post(
        f"{server}/v1/chat/completions",
        timeout=60,
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert message in error["message"] and "\n" not in error["message"] and error["param"] == "model"
