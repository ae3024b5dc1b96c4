"""The Python API: open a model SPEC, generate with or without the rule expert, score responses.

    from ijt_local import load, generate, batch_generate

    model = load("default+poe")  # the embedded gemma-3-270m times the paper's three rules
    print(generate(model, "Name three rivers in Europe.", max_tokens=64))
    replies = batch_generate(model, ["Name a colour.", "Name a fruit."], max_tokens=32)

A SPEC is what every verb's `--model` takes (ijt_local/runtime/specs.py): a name, a GGUF path or
owner/repo:file.gguf, `+adapter.gguf[@scale]` LoRA adapters, `+poe[:rules]`. docs/python-api.md has more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .rules.expert import load_rules
from .runtime.conversation import generate_reply
from .runtime.session import SamplingParams
from .runtime.specs import LoadedModel, RunOptions, open_spec


def load(spec: str = "default", **options) -> LoadedModel:
    """Load a SPEC. `options` are RunOptions fields: n_ctx, threads, gpu_layers, template, rules_config,
    paper_exact, adapters. Close the model with `.close()`, or use it in a `with` block."""
    return open_spec(spec, RunOptions(**options))


def with_rules(model: LoadedModel, rules: str | None) -> LoadedModel:
    """The same loaded weights with other rules: names such as "eos,uniform" (`all` for the four), or None
    for the model alone. Nothing is loaded again."""
    options = model.options
    config = load_rules(rules, options.rules_config, options.paper_exact) if rules is not None else None
    return dataclasses.replace(model, rules=config)


def _messages(prompt: str | list[dict]) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def generate(
    model: LoadedModel,
    prompt: str | list[dict],
    max_tokens: int = 512,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_invariant: bool | None = None,
    on_text: Callable[[str], None] | None = None,
) -> str:
    """The reply to `prompt` (one user message, or a list of {"role", "content"} messages), under the
    model's rules if it has any. `on_text` receives the reply as it grows. With `batch_invariant` the
    reply is decoded as the batched paths decode it, so it equals `batch_generate`'s; False takes
    llama.cpp's one-row steps; None (default) lets the model's measured padding cost choose
    (`Session.batch_invariant_by_default`)."""
    return generate_reply(
        model.session,
        _messages(prompt),
        model.rules,
        exact=batch_invariant,
        on_text=on_text,
        max_tokens=max_tokens,
        sampling=SamplingParams(temperature, top_p, top_k, seed),
    ).text


def batch_generate(
    model: LoadedModel,
    prompts: list[str | list[dict]],
    max_tokens: int = 512,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    parallel: int | None = None,
) -> list[str]:
    """The replies to `prompts`, in their order, decoded together (`parallel` at once; default 32). A reply
    does not depend on the width, the order or the other prompts."""
    from .runtime.batch import generate_all

    conversations = [_messages(prompt) for prompt in prompts]
    replies = [""] * len(conversations)
    sampling = SamplingParams(temperature, top_p, top_k, seed)
    for index, generation in generate_all(
        model.session,
        conversations,
        parallel,
        exact=True,
        rules=model.rules,
        max_tokens=max_tokens,
        sampling=sampling,
    ):
        replies[index] = generation.text
    return replies


def score(model: LoadedModel, prompt: str | list[dict], responses: list[str]) -> list[float]:
    """The mean log-probability per token of each response to `prompt`, under the model (times its rules,
    normalised, when it has any): the paper's response ranking scores."""
    scores = model.session.score_responses(_messages(prompt), responses, model.rules)
    return [s.mean_logprob for s in scores]
