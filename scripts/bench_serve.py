"""`ijt-local serve` under load: aggregate tok/s of 1 vs N concurrent clients, and time to the first
streamed token on an idle server.

    python scripts/bench_serve.py [--model default+poe] [--clients 8] [--requests 16] [--max-tokens 128]

Starts the server on a free loopback port (--parallel = --clients), then, against the same running server:
  single      --requests requests one after another from one client
  concurrent  the same requests from --clients clients at once
  ttft        5 streamed requests for a short prompt on the idle server: seconds to the first content chunk
Replies are greedy, with the model's rules (the served product: a PoE reply runs until the rules end it,
100-250 tokens; without them gemma-3 base stops at a role tag after a few dozen, and prefill would
dominate); tok/s counts completion tokens from the responses' `usage`. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import httpx
from bench_harness import instructions, served


def complete(url: str, prompt: str, max_tokens: int) -> int:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
    reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600).json()
    return reply["usage"]["completion_tokens"]


def tok_s(url: str, prompts: list[str], clients: int, max_tokens: int) -> float:
    tokens, lock, queue = [0], threading.Lock(), list(prompts)

    def client():
        while True:
            with lock:
                if not queue:
                    return
                prompt = queue.pop()
            done = complete(url, prompt, max_tokens)
            with lock:
                tokens[0] += done

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tokens[0] / (time.perf_counter() - started)


def first_token_seconds(url: str) -> float:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
    }
    started = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                return time.perf_counter() - started
    raise SystemExit("bench_serve: no content streamed")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default+poe")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    prompts = instructions(limit=args.requests)
    with served(args.model, args.clients, 1024) as (_, url):
        complete(url, prompts[0], 8)  # warm-up
        ttft = statistics.median(first_token_seconds(url) for _ in range(5))
        single = tok_s(url, prompts, 1, args.max_tokens)
        concurrent = tok_s(url, prompts, args.clients, args.max_tokens)
    result = {
        "model": args.model,
        "requests": len(prompts),
        "max_tokens": args.max_tokens,
        "clients": args.clients,
        "single_client_tok_s": round(single, 1),
        "concurrent_tok_s": round(concurrent, 1),
        "ratio": round(concurrent / single, 2),
        "ttft_idle_s": round(ttft, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
