"""Threads and OpenMP wait policy under CPU contention: generation tok/s idle and with a busy process.

    python scripts/bench_threads.py [--model default] [--threads 1,2] [--tokens 64] [--width 16]
    python scripts/bench_threads.py --follow [--model default] [--tokens 64]

llama.cpp's CPU backend here is built with OpenMP: its threads meet at a barrier after every graph node
and spin there while they wait (libgomp's default), or sleep at once with OMP_WAIT_POLICY=passive. A
spinning thread whose partner has been descheduled by another process burns its time slice for nothing.
Each configuration (threads x wait policy x idle/busy) runs in a fresh process, because libgomp reads
its environment once; "busy" starts one process spinning on a core for the whole measurement. Two
figures per configuration: single-stream greedy tok/s (`--tokens` tokens, EOS ignored) and batched
aggregate tok/s (`--width` prompts, `--tokens` tokens each). The last line is one JSON object.

--follow: what `Session.follow_load` buys. Two sessions opened on the idle machine, one left to choose its
threads and one fixed at 2; single-stream tok/s (median of 3) of each while idle, after a process starts
spinning on a core, and after it stops, each session re-counting the load once at each change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

from bench_harness import child_json, median

PROMPTS = [
    "Write a short poem about the sea.",
    "Explain how a bicycle works.",
    "Give three tips for sleeping well.",
    "What is the capital of France?",
]


def child(model: str, threads: int, tokens: int, width: int) -> dict:
    from ijt_local.runtime.batch import generate_all, generate_one
    from ijt_local.runtime.session import Session

    session = Session(model, n_ctx=512, threads=threads)
    conversations = [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}] for i in range(width)]
    options = dict(max_tokens=tokens, ignore_eos=True, stop_at_role_tags=False)
    generate_one(session, conversations[0], exact=False, max_tokens=4)  # warm-up: page in the weights
    started = time.perf_counter()
    single = generate_one(session, conversations[0], exact=False, **options).n_tokens / (time.perf_counter() - started)
    started = time.perf_counter()
    total = sum(g.n_tokens for _, g in generate_all(session, conversations, width, **options))
    return {"single_tok_s": round(single, 1), "batched_tok_s": round(total / (time.perf_counter() - started), 1)}


@contextlib.contextmanager
def busy_core():
    """Another process spinning on one core while the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def follow(args) -> dict:
    from ijt_local.runtime import session as runtime
    from ijt_local.runtime.batch import generate_one
    from ijt_local.runtime.session import Session

    sessions = {"follows_load": Session(args.model, n_ctx=512), "fixed_2": Session(args.model, n_ctx=512, threads=2)}
    conversation = [{"role": "user", "content": PROMPTS[0]}]

    def recount_then_measure(session) -> dict:
        runtime.THREAD_CHECK_SECONDS = 0.0  # re-count now, once, and not again while timing
        session.follow_load()
        runtime.THREAD_CHECK_SECONDS = float("inf")
        speeds = []
        for _ in range(3):
            started = time.perf_counter()
            tokens = generate_one(session, conversation, False, max_tokens=args.tokens, ignore_eos=True).n_tokens
            speeds.append(tokens / (time.perf_counter() - started))
        return {"threads": session.threads, "tok_s": median(speeds, 1)}

    for session in sessions.values():
        generate_one(session, conversation, False, max_tokens=4)  # warm-up: page in the weights
    phases = {}
    phases["idle"] = {name: recount_then_measure(s) for name, s in sessions.items()}
    with busy_core():
        time.sleep(0.5)
        phases["busy"] = {name: recount_then_measure(s) for name, s in sessions.items()}
    time.sleep(0.5)
    phases["idle_again"] = {name: recount_then_measure(s) for name, s in sessions.items()}
    for session in sessions.values():
        session.close()
    return phases


def measure(args, threads: int, policy: str | None, busy: bool) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    command = [__file__, "--child", "--model", args.model, "--threads", str(threads)]
    command += ["--tokens", str(args.tokens), "--width", str(args.width)]
    with busy_core() if busy else contextlib.nullcontext():
        return child_json(command, "the measuring process", env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--follow", action="store_true", help="measure Session.follow_load (see above)")
    args = parser.parse_args()
    if args.follow:
        print(json.dumps({"model": args.model, "cores": os.cpu_count(), "tokens": args.tokens, "follow": follow(args)}))
        return
    if args.child:
        print(json.dumps(child(args.model, int(args.threads), args.tokens, args.width)))
        return

    results = {}
    for load in ("idle", "busy"):
        for threads in (int(t) for t in args.threads.split(",")):
            for policy in (None, "passive"):
                name = f"{load}/t{threads}/{policy or 'default'}"
                if threads == 1 and policy:
                    continue  # one thread never waits at a barrier
                results[name] = measure(args, threads, policy, load == "busy")
                print(name, results[name], file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "model": args.model,
                "cores": os.cpu_count(),
                "tokens": args.tokens,
                "width": args.width,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
