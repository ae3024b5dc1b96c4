"""What a JSON schema costs as a hard expert: the grammar's mask per token against the decode step, for two
engines on the same schema and gemma-3-270m's 262,144-token vocabulary.

- llguidance (what ijt-local uses, ijt_local/runtime/grammar.py): the mask as a bitmask, turned into
  0/−∞ scores and added to the logits row;
- llama.cpp's own grammar sampler (through llama-cpp-python), on the schema converted to GBNF by
  llama-cpp-python's json_schema_to_gbnf: applied to a 262k-entry candidate array each token.

Correctness: a valid document of the schema is teacher-forced through both; each of its tokens must be
admitted at its step, and the end admitted at the end; a token that breaks the schema must be refused.
Speed: the per-token mask time (median over the document's tokens), and, in real batched decoding of
val instructions through BatchDecoder at widths 1 and 16 with llguidance, the time spent in the mask
(inside the steps) as a share of the steps' time. The last line is one JSON object.

    python scripts/bench_grammar.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
import warnings

import bench_harness  # noqa: F401 - puts this checkout first on sys.path
import numpy as np
from bench_harness import median, user_conversations

from ijt_local.runtime import batch as batch_module
from ijt_local.runtime import grammar as grammar_module
from ijt_local.runtime.grammar import json_schema_grammar
from ijt_local.runtime.scores import RequestScores
from ijt_local.runtime.session import Session

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "email": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "email", "tags", "active"],
    "additionalProperties": False,
}
DOCUMENT = {"name": "Ada Lovelace", "age": 36, "email": "ada@example.org", "tags": ["maths", "poetry"], "active": True}


def llguidance_side(session, tokens: list[int]) -> dict:
    """Teacher-force `tokens` through a GrammarState: per-token time of `apply` (mask + scores)."""
    grammar = json_schema_grammar(session, SCHEMA)
    state = grammar.start()
    logits = np.zeros(session.n_vocab, dtype=np.float32)
    times, admitted = [], True
    for token in tokens:
        logits[:] = 0.0
        started = time.perf_counter()
        state.apply(logits)
        times.append(time.perf_counter() - started)
        admitted &= bool(np.isfinite(logits[token]))
        state.accept(token)
    logits[:] = 0.0
    state.apply(logits)
    end_admitted = bool(np.isfinite(logits[session.eos_id]))
    bad = grammar.start()
    logits[:] = 0.0
    bad.apply(logits)
    refuses = not np.isfinite(logits[session.tokenize("hello", special=False)[0]])  # a document starts with {
    return {
        "mask_ms_per_token": median([t * 1000 for t in times], 4),
        "all_tokens_admitted": admitted,
        "end_admitted": end_admitted,
        "refuses_a_bad_first_token": bool(refuses),
    }


def llama_cpp_side(session, tokens: list[int]) -> dict:
    """The same through llama.cpp's grammar sampler over a full candidate array per token."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import llama_cpp
        from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(SCHEMA))
    vocab = session.llama.vocab
    started = time.perf_counter()
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    compile_ms = (time.perf_counter() - started) * 1000
    if not sampler:
        return {"error": "llama.cpp could not compile the grammar"}
    n = session.n_vocab
    data = (llama_cpp.llama_token_data * n)()
    array = llama_cpp.llama_token_data_array(data, n, -1, False)
    view = np.ctypeslib.as_array(ctypes.cast(data, ctypes.POINTER(ctypes.c_float * (3 * n))).contents)
    view = view.view(np.float32).reshape(n, 3)
    ids = np.arange(n, dtype=np.int32)

    def apply() -> np.ndarray:
        view[:, 0] = ids.view(np.float32)  # id (int32 bits), logit, p
        view[:, 1] = 0.0
        view[:, 2] = 0.0
        array.size, array.selected, array.sorted = n, -1, False
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return np.isfinite(view[:, 1])

    times, admitted = [], True
    try:
        for token in tokens:
            started = time.perf_counter()
            allowed = apply()
            times.append(time.perf_counter() - started)
            admitted &= bool(allowed[token])
            llama_cpp.llama_sampler_accept(sampler, token)
        end_admitted = bool(apply()[session.eos_id])
    finally:
        llama_cpp.llama_sampler_free(sampler)
    return {
        "compile_ms": round(compile_ms, 2),
        "mask_ms_per_token": median([t * 1000 for t in times], 4),
        "all_tokens_admitted": admitted,
        "end_admitted": end_admitted,
    }


def decoding_share(session, width: int, rounds: int) -> dict:
    """Batched decoding with the schema at `width`: the mask's time inside the steps, as a share of the
    steps' time (median over rounds)."""
    grammar = json_schema_grammar(session, SCHEMA)
    scores = RequestScores.make(grammar=grammar)
    conversations = [
        [{"role": "user", "content": c[0]["content"] + "\nAnswer as JSON with name, age, email, tags, active."}]
        for c in user_conversations()[:width]
    ]
    spent = {"mask": 0.0, "steps": 0.0, "count": 0}
    apply, step = grammar_module.GrammarState.apply, batch_module.BatchDecoder._step

    def timed_apply(self, logits):
        started = time.perf_counter()
        apply(self, logits)
        spent["mask"] += time.perf_counter() - started

    def timed_step(self):
        mask_before, started = spent["mask"], time.perf_counter()
        chosen = step(self)
        spent["steps"] += time.perf_counter() - started
        spent["count"] += 1
        spent["in_steps"] = spent.get("in_steps", 0.0) + spent["mask"] - mask_before
        return chosen

    shares, step_ms, mask_ms = [], [], []
    grammar_module.GrammarState.apply, batch_module.BatchDecoder._step = timed_apply, timed_step
    try:
        decoder = batch_module.BatchDecoder(session, width)
        for _ in range(rounds):
            spent.update(mask=0.0, steps=0.0, count=0, in_steps=0.0)
            list(decoder.generate(conversations, max_tokens=48, scores=scores))
            shares.append(spent["in_steps"] / spent["steps"])
            step_ms.append(spent["steps"] / spent["count"] * 1000)
            mask_ms.append(spent["in_steps"] / spent["count"] * 1000)
        decoder.close()
    finally:
        grammar_module.GrammarState.apply, batch_module.BatchDecoder._step = apply, step
    return {
        "step_ms": median(step_ms, 2),
        "mask_ms_per_step": median(mask_ms, 3),
        "mask_share_of_step": median(shares, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    session = Session("default", n_ctx=4096)
    started = time.perf_counter()
    json_schema_grammar(session, SCHEMA)  # the vocabulary's tokenizer, once per model
    tokenizer_s = time.perf_counter() - started
    tokens = session.tokenize(json.dumps(DOCUMENT), special=False)
    engines = {"llguidance": llguidance_side(session, tokens), "llama.cpp": llama_cpp_side(session, tokens)}
    engines["llguidance"]["tokenizer_s"] = round(tokenizer_s, 2)
    widths = {str(w): decoding_share(session, w, args.rounds) for w in (1, 16)}
    for engine in engines.values():
        if "mask_ms_per_token" in engine:
            engine["share_of_step_at_width_16"] = round(
                16 * engine["mask_ms_per_token"] / widths["16"]["step_ms"], 4
            )  # 16 masks a step
            engine["share_of_step_at_width_1"] = round(engine["mask_ms_per_token"] / widths["1"]["step_ms"], 4)
    session.close()
    print(
        json.dumps(
            {
                "benchmark": "grammar",
                "model": "default (gemma-3-270m Q4_K_M, 262,144 tokens)",
                "document_tokens": len(tokens),
                "engines": engines,
                "decoding_with_llguidance": widths,
                "mask_share_at_width_16": widths["16"]["mask_share_of_step"],
                "goal": 0.05,
            }
        )
    )


if __name__ == "__main__":
    main()
