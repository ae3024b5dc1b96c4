"""`ijt-local serve` for real: the server runs in its own process on a free loopback port with the embedded
gemma-3-270m x rules, and the `openai` package talks to it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from ijt_local.cli import cli

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

PROMPTS = [
    "Name three colours.",
    "What is the capital of France?",
    "Give me a tip for sleeping well.",
    "Write one sentence about the sea.",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(*options: str):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ijt_local", "serve", "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError("serve did not come up in 2 minutes")


def stop(process) -> str:
    process.terminate()
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


@pytest.fixture(scope="module")
def server():
    process, url = start_server(
        "--model", "poe=default+poe", "--model", "chat=smollm2-135m-instruct", "--parallel", "4", "--ctx", "1024"
    )
    yield url
    stop(process)


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)


def ask(url: str, prompt: str, model: str = "poe", **options):
    options = {"temperature": 0, **options}
    return client(url).chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], **options)


@pytest.mark.slow
def test_poe_reply_stops_on_its_own_and_streams_the_same_text(server):
    assert [m.id for m in client(server).models.list().data] == ["poe", "chat"]
    reply = ask(server, PROMPTS[0], max_tokens=400)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content.strip()
    assert 0 < reply.usage.completion_tokens < 400 and reply.usage.prompt_tokens > 5
    chunks = list(ask(server, PROMPTS[0], max_tokens=400, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == choice.message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    # a stop string ends the reply before it, also when streamed
    cut = ask(server, PROMPTS[0], max_tokens=400, stop=["\n"]).choices[0]
    assert cut.finish_reason == "stop" and "\n" not in cut.message.content
    assert choice.message.content.startswith(cut.message.content + "\n")
    streamed_cut = list(ask(server, PROMPTS[0], max_tokens=400, stop=["\n"], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed_cut if c.choices) == cut.message.content
    # the rule expert is per request: switched off, the base model alone gives another reply at the same budget
    alone = ask(server, PROMPTS[0], max_tokens=400, extra_body={"ijt_rules": "off"})
    assert alone.choices[0].message.content != choice.message.content


@pytest.mark.slow
def test_rules_config_changes_the_served_reply_as_it_changes_generate(server, tmp_path):
    config = tmp_path / "early-eos.toml"
    config.write_text("[eos]\nmax_bonus = 40.0\nramp_tokens = 20\n")  # the paper's: +15 reached at 250 tokens
    options = ("--model", "poe=default+poe", "--parallel", "2", "--ctx", "1024", "--rules-config", str(config))
    process, url = start_server(*options)
    try:
        configured = ask(url, PROMPTS[0], max_tokens=48).choices[0]
        named = ask(url, PROMPTS[0], max_tokens=48, extra_body={"ijt_rules": "eos,uniform,diversity"}).choices[0]
    finally:
        stop(process)
    default = ask(server, PROMPTS[0], max_tokens=48).choices[0].message.content
    # the steeper EOS ramp ends the default config's reply early
    assert configured.finish_reason == "stop" and configured.message.content.strip()
    assert configured.message.content != default and default.startswith(configured.message.content)
    assert named.message.content == configured.message.content  # rules a request names read the config too
    generated = CliRunner().invoke(
        cli,
        ["generate", "--model", "default+poe", "--rules-config", str(config), "--batch-invariant"]
        + ["--prompt", PROMPTS[0], "--max-tokens", "48"],
    )
    assert generated.exit_code == 0, generated.output
    assert generated.stdout == configured.message.content + "\n"


def concurrently(url: str, model: str, prompts: list[str], **options) -> list[str]:
    replies: dict[int, str] = {}

    def run(index):
        replies[index] = ask(url, prompts[index], model, max_tokens=48, **options).choices[0].message.content

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [replies[i] for i in range(len(prompts))]


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, options",
    [("chat", {}), ("poe", {}), ("poe", {"temperature": 0.8, "seed": 5})],
    ids=["chat", "poe", "poe-seeded"],
)
def test_a_request_gets_the_same_reply_alone_and_among_concurrent_ones(server, model, options):
    """One prompt, one reply: however many requests share the engine's decode steps (rows.py)."""
    single = [ask(server, prompt, model, max_tokens=48, **options).choices[0].message.content for prompt in PROMPTS]
    assert concurrently(server, model, PROMPTS, **options) == single


@pytest.mark.slow
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server):
    raw = httpx.post(
        f"{server}/v1/chat/completions", content=b"{not json", timeout=30, headers={"content-type": "application/json"}
    )
    assert raw.status_code == 400 and raw.json()["error"]["message"].startswith("the body is not valid JSON")
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        ask(server, "hi", max_tokens=-5)
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client(server).chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="does not fit"):
        ask(server, "word " * 2000, max_tokens=10)
    with pytest.raises(openai.BadRequestError, match="ijt_rules"):
        ask(server, "hi", extra_body={"ijt_rules": "eos,nonsense"})
    assert ask(server, PROMPTS[1], max_tokens=8).choices[0].message.content


@pytest.mark.slow
def test_a_client_that_goes_away_frees_its_slot(server):
    body = {
        "model": "poe",
        "messages": [{"role": "user", "content": PROMPTS[2]}],
        "max_tokens": 900,
        "temperature": 0,
        "stream": True,
        "ijt_rules": "off",
    }
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if '"content": "' in line and '"content": ""' not in line)
        assert wait_for_running(server, 1)
    assert wait_for_running(server, 0)  # long before its 900 tokens would have ended


def wait_for_running(url: str, count: int, seconds: float = 10) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if json.loads(httpx.get(f"{url}/health").text)["models"]["poe"]["running"] == count:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_api_key_and_the_open_host_warning():
    process, url = start_server(
        "--model", "smollm2-135m-instruct", "--api-key", "s3cret", "--parallel", "1", "--ctx", "512"
    )
    try:
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").models.list()
        assert [m.id for m in client(url, "s3cret").models.list().data] == ["smollm2-135m-instruct"]
        assert httpx.get(f"{url}/health").status_code == 200  # health needs no key
        assert httpx.get(f"{url}/").status_code == 200  # nor the page; its calls to /v1/ send the key typed in it
        assert httpx.post(f"{url}/v1/completions", json={"prompt": "hi"}).status_code == 401
    finally:
        stop(process)
    process, _ = start_server(
        "--model", "smollm2-135m-instruct", "--host", "0.0.0.0", "--parallel", "1", "--ctx", "512"
    )
    err = stop(process)
    assert "warning: serving on 0.0.0.0 without authentication" in err
