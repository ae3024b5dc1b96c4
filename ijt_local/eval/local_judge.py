"""The in-process judge: a chat GGUF on the project's llama.cpp runtime that judges by reading.

For one order of a pair, the prompt form is rendered with the judge's chat template, followed by the
form's answer prefix (none for AlpacaEval 2's prompt, "The better response is (" for the direct
question), and prefilled once. The next-token distribution
(log-softmax over the whole vocabulary) at the answer position gives P(first) and P(second): the summed
probability of every token that spells the identifier, with or without a leading space and followed by
nothing or punctuation ("a", " a", "a)"), as AlpacaEval 2's weighted annotator reads the logprobs of
its identifiers. The judgement is P(first) / (P(first) + P(second)); their sum (the `mass`) says whether
the judge answered the question at all.

Each output is cut to `max_output_tokens` judge tokens (marked with "…") and the instruction to twice
that, so every prompt stays bounded (at most ~2,000 tokens at the default 400; the 1.5B judge prefills
about 100 tokens/s on 2 cores).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..measured import judge_agreement, measured
from .judge_prompts import DEFAULT_FORM, DEFAULT_MAX_OUTPUT_TOKENS, REFERENCE_FORM, get_form

MIN_IDENTIFIER_MASS = 0.05  # below this the judge is not answering the judge prompt: the judgement is void
# Agreement with GPT-4 measured by scripts/judge_agreement.py on the AlpacaEval dev pairs, for the named judge
# at the default truncation (ijt_local/measured.toml, with the commands); reported beside every win rate this
# judge gives. Keys: (judge file, prompt form); difference_se: standard error of (agreement - length baseline).
MEASURED_AGREEMENT = {
    (judge_file, form): judge_agreement(judge_file, form)
    for judge_file, forms in measured()["judge_agreement"].items()
    for form in forms
}
_CONTROL_STRINGS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def gguf_chat_template(path: Path) -> str:
    """The project template ('chatml' or 'tulu') matching the chat template a GGUF carries; a model
    without one is not instruction-tuned and cannot be a judge."""
    from ..runtime.llama import read_metadata

    template = read_metadata(path)[0].get("tokenizer.chat_template") or ""
    if not template.strip():
        raise UserError(
            f"{path}: has no chat template (tokenizer.chat_template), so it is not an "
            "instruction-tuned chat model and cannot judge; use one that is (e.g. --judge judge)"
        )
    if "<|im_start|>" in template:
        return "chatml"
    if "<|user|>" in template:
        return "tulu"
    raise UserError(f"{path}: its chat template is neither ChatML nor Tulu, the two the judge can render")


def identifier_token_ids(pieces: list[str], identifier: str) -> np.ndarray:
    """Ids of the tokens that spell `identifier` as a whole word: 'a', ' a', 'a)', 'a.' — not 'an'."""
    ids = []
    for token_id, piece in enumerate(pieces):
        text = piece.lstrip()
        if text.startswith(identifier) and (len(text) == len(identifier) or not text[len(identifier)].isalnum()):
            ids.append(token_id)
    return np.asarray(ids, dtype=np.int64)


def _logsumexp(values: np.ndarray) -> float:
    if values.size == 0:
        return -math.inf
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))


def _share(log_first: float, log_second: float) -> float:
    """P(first) / (P(first) + P(second)) from log-probabilities (both may be tiny)."""
    difference = log_second - log_first
    if math.isnan(difference):
        return 0.5
    return 0.0 if difference > 700 else 1.0 / (1.0 + math.exp(difference))


class LocalJudge:
    """Judge pairs with a chat GGUF in this process. The model is loaded at the first judgement that is
    not in the cache, so a finished run re-reads its cache without loading 1 GB."""

    def __init__(
        self,
        spec: str,
        form: str | None = None,
        max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
        threads: int | None = None,
        n_ctx: int = 4096,
        reuse_prefix: bool = True,
        reference_answers=None,
    ):
        """`reference_answers` (reference_answers.ReferenceAnswers): judge reference-guided; the form then
        defaults to MT-bench's reference prompt and must be one that shows the reference."""
        from ..models import resolve_model

        if max_output_tokens < 16:
            raise UserError("--max-output-tokens must be at least 16")
        self.spec = spec
        self.form = get_form(form or (REFERENCE_FORM if reference_answers is not None else DEFAULT_FORM))
        if self.form.reference and reference_answers is None:
            raise UserError(f"judge prompt form {self.form.name!r} needs --reference-answers FILE")
        if reference_answers is not None and not self.form.reference:
            raise UserError(
                f"judge prompt form {self.form.name!r} does not show a reference answer; with "
                f"--reference-answers use {REFERENCE_FORM!r}"
            )
        self.reference_answers = reference_answers
        self.resolved = resolve_model(spec)
        self.template = gguf_chat_template(self.resolved.path)
        self.max_output_tokens = max_output_tokens
        self.threads = threads
        self.n_ctx = n_ctx
        self.reuse_prefix = reuse_prefix  # keep the KV prefix shared with the previous prompt
        self.session = None
        size = self.resolved.path.stat().st_size
        # What a cached judgement depends on: the judge file, the prompt form and the truncation.
        self.cache_id = f"{self.resolved.path.name}:{size}|{self.form.name}|{max_output_tokens}"
        self.model = f"{self.resolved.path.name} ({self.form.name})"
        measured = MEASURED_AGREEMENT.get((self.resolved.path.name, self.form.name))
        self.agreement = measured if measured and max_output_tokens == DEFAULT_MAX_OUTPUT_TOKENS else None

    def load(self) -> None:
        """Load the judge model (once; the first judgement does it when nobody did)."""
        if self.session is not None:
            return
        from ..runtime.session import Session

        self.session = Session(self.resolved, n_ctx=self.n_ctx, threads=self.threads, template=self.template)
        pieces = self.session.vocabulary().pieces
        self._ids = [identifier_token_ids(pieces, name) for name in self.form.identifiers]
        for name, ids in zip(self.form.identifiers, self._ids):
            if ids.size == 0:
                raise UserError(f"{self.resolved.path}: no token spells the judge identifier {name!r}")

    def _cut(self, text: str, budget: int) -> str:
        for control in _CONTROL_STRINGS:  # an output must not open or close a turn of the judge's prompt
            text = text.replace(control, control.replace("|", ""))
        tokens = self.session.tokenize(text, special=False)
        if len(tokens) <= budget:
            return text
        return self.session.detokenize(tokens[:budget]).rstrip() + " …"

    def prompt_tokens(
        self, question: str, instruction: str, first: str, second: str, reference: str | None = None
    ) -> list[int]:
        """The judge prompt; the instruction is cut to twice the output budget, each output and the
        reference answer to the budget."""
        budget = self.max_output_tokens
        messages = self.form.messages(
            question,
            self._cut(instruction, 2 * budget),
            self._cut(first, budget),
            self._cut(second, budget),
            None if reference is None else self._cut(reference, budget),
        )
        return self.session.prompt_tokens(messages) + self.session.tokenize(self.form.answer_prefix, special=False)

    def judge(self, instruction: str, first: str, second: str, reference: str | None = None) -> dict:
        """One order: {p_first, mass, prompt_tokens, seconds}. `reference`: the reference answer, for a
        reference-guided form."""
        self.load()
        started = time.perf_counter()
        p_firsts, masses, n_tokens = [], [], 0
        for question in self.form.questions:
            tokens = self.prompt_tokens(question, instruction, first, second, reference)
            n_tokens += len(tokens)
            logprobs = self.session.next_token_logprobs(tokens, self.reuse_prefix)
            log_first, log_second = (_logsumexp(logprobs[ids]) for ids in self._ids)
            mass = math.exp(log_first) + math.exp(log_second)
            masses.append(mass)
            p_firsts.append(_share(log_first, log_second))
        return {
            "p_first": sum(p_firsts) / len(p_firsts),
            "mass": min(masses),
            "prompt_tokens": n_tokens,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def first_probability(self, row: dict) -> float | None:
        return row["p_first"] if row["mass"] >= MIN_IDENTIFIER_MASS else None

    def explain_invalid(self, rows: list[dict]) -> str:
        mass = float(np.median([row["mass"] for row in rows]))
        a, b = self.form.identifiers
        return (
            f"judge {self.spec}: only {mass:.1%} (median) of its next-token probability falls on the "
            f"identifiers {a!r} and {b!r} after the {self.form.name!r} prompt, so it is not answering "
            "the question; use an instruction-tuned judge (e.g. --judge judge) or --judge-url"
        )

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
