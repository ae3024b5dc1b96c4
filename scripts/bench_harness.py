"""What the benchmark scripts share: this checkout's ijt_local, the val instructions, A/B rounds, medians,
measurements in a process of their own, and a server on a free loopback port.

A script runs as `python scripts/NAME.py`, so this folder is first on sys.path and `import bench_harness`
finds this module; importing it puts the repository root first, so the script measures this checkout's
ijt_local even where another one is installed. Import it before ijt_local (the import sorter puts it there).
Every benchmark still prints its own result as one JSON line, the last line of its output.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ijt_local.data.home import shared_data_path  # noqa: E402
from ijt_local.jsonl import read_jsonl  # noqa: E402

VAL = shared_data_path("val/val.jsonl")  # the paper's 56 held-out instructions


def instructions(path=VAL, limit: int | None = None) -> list[str]:
    """The `instruction` of each row of a JSONL file (the val instructions by default), the first `limit`."""
    return [row["instruction"] for row in read_jsonl(path)][:limit]


def user_conversations(path=VAL) -> list[list[dict]]:
    """Each instruction of a JSONL file as a one-message user conversation."""
    return [[{"role": "user", "content": text}] for text in instructions(path)]


def median(values, digits: int | None = None) -> float:
    """The median, rounded to `digits` decimals when given."""
    middle = statistics.median(values)
    return middle if digits is None else round(middle, digits)


def rounds(count: int, sides: dict[str, Callable], alternate: bool = True, after_round=None) -> dict[str, list]:
    """Run each side's measurement once per round, `count` rounds: {side: [result per round]}. With
    `alternate`, every other round runs the sides in reverse order, so a drift in the machine's load
    hits both alike. `after_round(index, results)` is called after each round (progress lines)."""
    results = {name: [] for name in sides}
    for index in range(count):
        order = list(sides) if not alternate or index % 2 == 0 else list(sides)[::-1]
        for name in order:
            results[name].append(sides[name]())
        if after_round is not None:
            after_round(index, results)
    return results


def child_json(arguments: list[str], what: str, env: dict | None = None) -> dict:
    """Run `python ARGUMENTS...` in a process of its own (its own peak memory, its own OpenMP settings) and
    read the JSON object on the last line of its output. If it fails: the tail of its stderr, and an exit
    naming `what`."""
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{what} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(model: str, parallel: int, ctx: int):
    """`ijt-local serve --model m=MODEL` on a free loopback port, once /health answers: yields (process, url);
    stopped on the way out (killed if it has not ended 30 s after being asked to)."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "ijt_local", "serve", "--model", f"m={model}", "--port", str(port)]
    command += ["--parallel", str(parallel), "--ctx", str(ctx)]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not start")
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
