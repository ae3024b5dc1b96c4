"""Pairwise judge against a real `python -m llama_cpp.server` serving SmolLM2-135M-Instruct on 127.0.0.1."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from ijt_local.cli import cli
from ijt_local.eval.judge import OpenAIJudge, chat_completions_url, judge_pairs, parse_preference
from ijt_local.models import smollm2_instruct_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    pytest.importorskip("uvicorn")
    port = _free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(smollm2_instruct_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
            "--model_alias",
            "judge",
            "--verbose",
            "False",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as response:
                    assert json.loads(response.read())["data"][0]["id"] == "judge"
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not come up")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_parse_preference():
    assert parse_preference("m") == 1 and parse_preference(" M\n") == 2
    assert parse_preference("The best model identifier is: m\n") == 1
    assert parse_preference("maybe") is None and parse_preference("") is None


def test_chat_completions_url():
    assert chat_completions_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1/chat/completions"
    assert chat_completions_url("http://h/v1/") == "http://h/v1/chat/completions"


@pytest.mark.slow
def test_winrate_both_orders_against_real_server_then_from_cache(judge_server, tmp_path):
    outputs, reference = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write(
        outputs,
        [
            {"instruction": "What is the capital of France?", "output": "The capital of France is Paris."},
            {"instruction": "Say hi.", "output": "Hi!"},
        ],
    )
    _write(
        reference,
        [
            {"instruction": "What is the capital of France?", "output": "I like turtles."},
            {"instruction": "Say hi.", "output": "Hi!"},  # identical: a tie without a request
            {"instruction": "Only in the reference", "output": "x"},  # a larger reference is fine
        ],
    )
    cache = tmp_path / "judgements.jsonl"
    args = [
        "eval",
        "winrate",
        "--outputs",
        str(outputs),
        "--reference",
        str(reference),
        "--judge-url",
        judge_server,
        "--judge-model",
        "judge",
        "--cache",
        str(cache),
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    result = json.loads(first.output)
    assert result["instructions"] == 2
    judged = [json.loads(line) for line in cache.read_text().splitlines()]
    assert sorted(j["order"] for j in judged) == ["output_first", "reference_first"]
    assert all(j["instruction"] == "What is the capital of France?" and j["reply"] for j in judged)
    # the judge names a model in both orders: each reply parses to m or M, and both instructions are scored
    assert [parse_preference(j["reply"]) in (1, 2) for j in judged] == [True, True], judged
    assert result["invalid_judgements"] == 0 and result["scored"] == 2
    assert 0.0 <= result["win_rate"] <= 1.0
    assert result["standard_error"] is not None and result["standard_error"] >= 0

    # The judge is gone: everything is answered from the cache, with the same result.
    second = CliRunner().invoke(cli, args[:-4] + ["--judge-url", "http://127.0.0.1:9/v1", "--cache", str(cache)])
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["win_rate"] == result["win_rate"]
    assert len(cache.read_text().splitlines()) == 2
    limited = CliRunner().invoke(
        cli, args[:-4] + ["--judge-url", "http://127.0.0.1:9/v1", "--cache", str(cache), "--limit", "1"]
    )
    assert limited.exit_code == 0 and json.loads(limited.output)["instructions"] == 1


@pytest.mark.slow
def test_unreachable_judge_is_one_line_and_keeps_cached_judgements(judge_server, tmp_path):
    outputs, reference = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write(outputs, [{"instruction": "Name a fruit.", "output": "Apple."}, {"instruction": "q2", "output": "a2"}])
    _write(reference, [{"instruction": "Name a fruit.", "output": "Carrot."}, {"instruction": "q2", "output": "b2"}])
    cache = tmp_path / "judgements.jsonl"
    # The first instruction is judged by the real server (both orders) ...
    judge_pairs({"Name a fruit.": "Apple."}, {"Name a fruit.": "Carrot."}, OpenAIJudge(judge_server, "judge"), cache)
    assert len(cache.read_text().splitlines()) == 2
    # ... then the endpoint is unreachable: one line, exit 1, the finished judgements stay.
    result = CliRunner().invoke(
        cli,
        [
            "eval",
            "winrate",
            "--outputs",
            str(outputs),
            "--reference",
            str(reference),
            "--judge-url",
            "http://127.0.0.1:9/v1",
            "--cache",
            str(cache),
            "--timeout",
            "5",
        ],
    )
    assert result.exit_code == 1
    assert "unreachable" in result.output and len(result.output.strip().splitlines()) == 1
    assert len(cache.read_text().splitlines()) == 2


@pytest.mark.slow
def test_compare_with_judge_adds_win_rates_to_results_and_report(judge_server, tmp_path):
    from ijt_local.eval.compare import run_compare
    from ijt_local.eval.judge import compare_judge

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"instruction": "Name a color."}) + "\n")
    out = tmp_path / "out"
    judge = compare_judge(judge_server, "judge", "instruct", out)
    results = run_compare(
        ["base=default", "instruct=smollm2-135m-instruct"],
        prompts,
        out,
        max_tokens=8,
        threads=1,
        judge=judge,
        log=lambda _: None,
    )
    winrate = results["models"]["base"]["winrate"]
    assert winrate["reference"] == "instruct" and winrate["instructions"] == 1
    assert "winrate" not in results["models"]["instruct"]
    assert len((out / "judgements" / "base-vs-instruct.jsonl").read_text().splitlines()) == 2
    assert "<th>winrate</th>" in (out / "report.html").read_text()
