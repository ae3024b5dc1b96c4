"""`ijt-local serve` under load and faults, on loopback, bounded in time.

    python scripts/bench_serve_faults.py [--model default+poe] [--parallel 8] [--clients 16] [--max-tokens 96]

Starts the server on a free loopback port, warms it with one request, then at once:
  - --clients streaming clients (greedy, the model's rules), one val instruction each; every fourth drops its
    connection after a few content chunks;
  - a slow reader, streaming one more request and pausing between chunks;
  - malformed requests (not JSON, wrong types, an unknown model, no messages, an unknown rule, a reply budget
    beyond the context) and a huge prompt (~2 MB of text), each expected to get a 4xx;
then checks that /health shows every slot free, that the server's RSS grew by less than 15 % over the
warmed-up server's, and that each completed reply equals the same request sent alone afterwards (one prompt,
one reply). Prints one JSON line: time to first token (p50/p95 over the streaming clients), aggregate
completion tok/s over the load phase, the checks; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import httpx
import psutil
from bench_harness import instructions, median, served

MALFORMED = [
    (b"{not json", "not valid JSON"),
    (json.dumps({"model": "m", "messages": "hi"}).encode(), "messages"),
    (json.dumps({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).encode(), "not served"),
    (json.dumps({"model": "m", "messages": []}).encode(), "messages"),
    (json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "ijt_rules": "x"}).encode(), "rule"),
    (
        json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**6}).encode(),
        "does not fit",
    ),
    (
        json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}).encode(),
        "temperature",
    ),
]


def body_for(instruction: str, max_tokens: int, stream: bool) -> dict:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": instruction}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def stream_client(url: str, body: dict, result: dict, drop_after: int | None = None, pause: float = 0.0) -> None:
    """Stream one reply into `result`: text, completion tokens, seconds to the first content chunk and to the end;
    with `drop_after`, close the connection after that many content chunks."""
    started = time.perf_counter()
    chunks, text = 0, []
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
            result["status"] = response.status_code
            for line in response.iter_lines():
                if pause:
                    time.sleep(pause)
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    result["tokens"] = chunk["usage"]["completion_tokens"]
                choice = chunk["choices"][0] if chunk["choices"] else {}
                content = choice.get("delta", {}).get("content")
                if content:
                    result.setdefault("ttft", time.perf_counter() - started)
                    text.append(content)
                    chunks += 1
                    if drop_after is not None and chunks >= drop_after:
                        result["dropped"] = True
                        return
                if choice.get("finish_reason"):
                    result["finish"] = choice["finish_reason"]
    except httpx.HTTPError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        result["text"] = "".join(text)
        result["seconds"] = time.perf_counter() - started


def refused(url: str, content: bytes, expect: str, results: list) -> None:
    try:
        response = httpx.post(
            f"{url}/v1/chat/completions", content=content, timeout=120, headers={"content-type": "application/json"}
        )
        message = response.json().get("error", {}).get("message", "")
        results.append(
            {
                "status": response.status_code,
                "ok": 400 <= response.status_code < 500 and expect.lower() in message.lower() and "\n" not in message,
                "message": message[:120],
            }
        )
    except (httpx.HTTPError, ValueError) as exc:
        results.append({"status": None, "ok": False, "message": f"{type(exc).__name__}: {exc}"})


def wait_idle(url: str, seconds: float = 60) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        models = httpx.get(f"{url}/health", timeout=10).json()["models"]
        if all(m["running"] == 0 and m["waiting"] == 0 for m in models.values()):
            return True
        time.sleep(0.2)
    return False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default+poe")
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--ctx", type=int, default=1024)
    args = parser.parse_args()
    texts = instructions(limit=args.clients + 1)
    with served(args.model, args.parallel, args.ctx) as (process, url):
        server = psutil.Process(process.pid)
        stream_client(url, body_for(texts[0], args.max_tokens, True), {})  # warm up: first context, caches
        rss_before = server.memory_info().rss
        clients = [{"instruction": text, "drop": index % 4 == 3} for index, text in enumerate(texts)]
        slow = clients.pop()  # the last instruction goes to the slow reader
        threads = [
            threading.Thread(
                target=stream_client,
                args=(url, body_for(c["instruction"], args.max_tokens, True), c, 3 if c["drop"] else None),
            )
            for c in clients
        ]
        threads.append(
            threading.Thread(
                target=stream_client,
                kwargs={
                    "url": url,
                    "body": body_for(slow["instruction"], args.max_tokens, True),
                    "result": slow,
                    "pause": 0.05,
                },
            )
        )
        faults: list[dict] = []
        huge = json.dumps(body_for("word " * 400_000, 8, False)).encode()
        fault_cases = [*MALFORMED, (huge, "does not fit")]
        threads += [
            threading.Thread(target=refused, args=(url, content, expect, faults)) for content, expect in fault_cases
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=900)
        load_seconds = time.perf_counter() - started
        idle = wait_idle(url)
        rss_after = server.memory_info().rss
        completed = [c for c in [*clients, slow] if c.get("finish") and not c.get("dropped")]
        mismatched = []
        for client in completed:  # each completed reply against the same request alone
            body = body_for(client["instruction"], args.max_tokens, False)
            alone = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600).json()
            alone = alone["choices"][0]["message"]["content"]
            if alone != client["text"]:
                mismatched.append(client["instruction"][:60])
        ttft = [c["ttft"] for c in clients if "ttft" in c]
        tokens = sum(c.get("tokens", 0) for c in completed)
        growth = rss_after / rss_before - 1
        report = {
            "model": args.model,
            "parallel": args.parallel,
            "clients": len(clients),
            "max_tokens": args.max_tokens,
            "dropped": sum(1 for c in clients if c.get("dropped")),
            "completed": len(completed),
            "client_errors": [c["error"] for c in [*clients, slow] if c.get("error")],
            "ttft_p50_s": median(ttft, 3) if ttft else None,
            "ttft_p95_s": round(percentile(ttft, 0.95), 3) if ttft else None,
            "aggregate_tok_per_s": round(tokens / load_seconds, 1),
            "completion_tokens": tokens,
            "load_seconds": round(load_seconds, 1),
            "slow_reader_finish": slow.get("finish"),
            "faults_refused_4xx": sum(f["ok"] for f in faults),
            "faults": len(faults),
            "fault_failures": [f for f in faults if not f["ok"]],
            "slots_free_after": idle,
            "rss_mb_before": round(rss_before / 2**20),
            "rss_mb_after": round(rss_after / 2**20),
            "rss_growth_pct": round(100 * growth, 1),
            "replies_equal_alone": len(completed) - len(mismatched),
            "mismatched": mismatched,
        }
        report["ok"] = bool(
            idle
            and growth < 0.15
            and not mismatched
            and report["faults_refused_4xx"] == len(faults)
            and not report["client_errors"]
            and slow.get("finish") is not None
        )
        print(json.dumps(report))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
