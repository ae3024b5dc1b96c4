"""Pairwise judge (AlpacaEval style): for each instruction, which of two outputs is better.

Two judges share this machinery: `LocalJudge` (local_judge.py), a chat GGUF run in this process that reads
its preference from next-token probabilities, and `OpenAIJudge`, any OpenAI-compatible chat endpoint (a
hosted API or a local `python -m llama_cpp.server`) asked with AlpacaEval 2's prompt, whose text reply is
parsed (m or M).

Every pair is judged in both orders (output first, reference first) so the judge's position bias cancels.
A judgement gives the probability that the first output is better (0 or 1 for a parsed reply); an
instruction's `preference` is the order-averaged probability that the OUTPUTS row beats the REFERENCE row,
0.5 for identical outputs (no judgement needed). Win rates and their standard errors: winrate_stats.py.
A judgement that does not answer (a reply naming neither model, or next-token mass on the identifiers
below MIN_IDENTIFIER_MASS) is invalid and left out; if the first few new judgements are all invalid, the
run stops with one line saying why. Each judgement is appended to a JSONL cache as it arrives, keyed by
the judge (model, prompt form, truncation), the order and the texts, so an interrupted or failed run
resumes without judging again.

A reference-guided judge (one with `reference_answers`, reference_answers.py) is given each instruction's
reference answer too, and the answer is part of the judgement's cache key. An instruction without a
reference answer is not judged at all: its row says `no_reference_answer` and the summary counts them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import UserError
from ..jsonl import JsonlAppender, read_completed_rows, write_atomic
from .judge_prompts import DEFAULT_FORM, DEFAULT_MAX_OUTPUT_TOKENS, PROMPT_FORMS, REFERENCE_FORM
from .prompt_sets import load_outputs
from .winrate_stats import (
    judged_both_ways,
    length_controlled_win_rate,
    mean_and_standard_error,
    position_free_preference,
)


def judge_messages(instruction: str, output_1: str, output_2: str, reference: str | None = None) -> list[dict]:
    """AlpacaEval 2's prompt; with a reference answer, MT-bench's reference-guided one."""
    form = PROMPT_FORMS["alpaca_eval_2" if reference is None else REFERENCE_FORM]
    return form.messages(form.questions[0], instruction, output_1, output_2, reference)


def parse_verdict(reply: str) -> float | None:
    """P(first) from an MT-bench verdict: the last [[A]] (1), [[B]] (0) or [[C]] (a tie, 0.5); None if none."""
    found = re.findall(r"\[\[([ABC])\]\]", reply)
    return None if not found else {"A": 1.0, "B": 0.0, "C": 0.5}[found[-1]]


def parse_preference(reply: str) -> int | None:
    """1 if the judge picked the first output (m), 2 for the second (M), None if it named neither."""
    match = re.match(r"""^[\s"'`*]*(?i:model[_ ]?(?:identifier)?\s*[:=]?\s*)?([mM])\b""", reply) or re.search(
        r"""(?i:identifier|best model|answer)\W*(?i:is\W*)?([mM])\b""",
        reply,  # "The best model identifier is: m"
    )
    if not match:
        return None
    return 1 if match.group(1) == "m" else 2


def chat_completions_url(base_url: str) -> str:
    url = base_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if re.match(r"^https?://[^/]+$", url):
        url += "/v1"
    return url + "/chat/completions"


class OpenAIJudge:
    """A chat model behind an OpenAI-compatible /chat/completions endpoint, asked greedily."""

    agreement = None  # with GPT-4: unknown for an arbitrary endpoint

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_tokens: int | None = None,
        reference_answers=None,
    ):
        """With `reference_answers` (reference_answers.ReferenceAnswers) the endpoint is asked MT-bench's
        reference-guided prompt and its [[A]] / [[B]] / [[C]] verdict is parsed (it may explain first)."""
        self.url = chat_completions_url(base_url)
        self.model = model
        self.reference_answers = reference_answers
        if max_tokens is None:
            max_tokens = 16 if reference_answers is None else 1024
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.timeout = timeout
        self.max_tokens = max_tokens

    def complete(self, messages: list[dict]) -> str:
        body = json.dumps(
            {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace").strip()
            raise UserError(f"judge at {self.url}: HTTP {exc.code} ({detail})") from None
        except urllib.error.URLError as exc:
            raise UserError(f"judge at {self.url} is unreachable ({exc.reason})") from None
        except (TimeoutError, ConnectionError) as exc:
            raise UserError(f"judge at {self.url} is unreachable ({exc})") from None
        except ValueError:
            raise UserError(f"judge at {self.url}: reply is not JSON") from None
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise UserError(f"judge at {self.url}: unexpected reply {str(payload)[:200]}") from None

    @property
    def cache_id(self) -> str:
        return self.model if self.reference_answers is None else f"{self.model}|{REFERENCE_FORM}"

    def judge(self, instruction: str, first: str, second: str, reference: str | None = None) -> dict:
        return {"reply": self.complete(judge_messages(instruction, first, second, reference))}

    def first_probability(self, row: dict) -> float | None:
        if self.reference_answers is not None:
            return parse_verdict(row["reply"])
        picked = parse_preference(row["reply"])
        return None if picked is None else float(picked == 1)

    def explain_invalid(self, rows: list[dict]) -> str:
        names = "m or M" if self.reference_answers is None else "[[A]], [[B]] or [[C]]"
        return (
            f"judge {self.model} at {self.url}: none of its last {len(rows)} replies names {names} "
            f"(e.g. {rows[-1]['reply'][:60]!r})"
        )

    def close(self) -> None:
        pass


def judgement_key(
    model: str, order: str, instruction: str, first: str, second: str, reference: str | None = None
) -> str:
    parts = [model, order, instruction, first, second] + ([] if reference is None else [reference])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def reference_answers_of(judge):
    """The judge's reference answers (reference_answers.ReferenceAnswers), or None if it is not
    reference-guided."""
    return getattr(judge, "reference_answers", None)


def lacks_reference(judge, instruction: str) -> bool:
    """A reference-guided judge has no reference answer for this instruction: it cannot judge it."""
    references = reference_answers_of(judge)
    return references is not None and instruction not in references


ORDERS = ("output_first", "reference_first")
FAIL_AFTER_INVALID = 4  # new judgements, all invalid, before the run stops


class JudgementCache:
    """Judgements of one judge, cached in a JSONL file: `pair` judges what is missing (both orders) and
    appends each judgement as it finishes. Stops with the judge's own explanation when the first few new
    judgements are all invalid."""

    def __init__(self, judge, path: str | Path):
        self.judge = judge
        self.path = Path(path)
        self.done = {row["key"]: row for row in read_completed_rows(self.path) if "key" in row}
        self._appender = None
        self._new_invalid: list[dict] = []
        self._new_valid = 0

    def __enter__(self):
        self._appender = JsonlAppender(self.path)
        return self

    def __exit__(self, *exc):
        self._appender.close()

    def judgement(self, order: str, instruction: str, first: str, second: str) -> tuple[dict, bool]:
        """(cached row, whether it was judged just now)."""
        references = reference_answers_of(self.judge)
        reference = None if references is None else references.get(instruction)
        if references is not None and reference is None:
            raise UserError(f"{references.name}: no reference answer for {instruction[:60]!r}")
        key = judgement_key(self.judge.cache_id, order, instruction, first, second, reference)
        if key in self.done:
            return self.done[key], False
        verdict = (
            self.judge.judge(instruction, first, second)
            if reference is None
            else self.judge.judge(instruction, first, second, reference=reference)
        )
        row = {"key": key, "order": order, "instruction": instruction} | verdict
        self._appender.write(row)
        self.done[key] = row
        return row, True

    def pair(self, instruction: str, ours: str, theirs: str) -> dict:
        """{order: P(ours beats theirs) in that order, or None if invalid; 'rows': the judgements}."""
        values, rows = {}, []
        for order in ORDERS:
            values[order], row = self.preference(order, instruction, ours, theirs)
            rows.append(row)
        return values | {"rows": rows}

    def preference(self, order: str, instruction: str, ours: str, theirs: str) -> tuple[float | None, dict]:
        """(P(ours beats theirs) judged in `order`, or None if invalid; the judgement row)."""
        first, second = (ours, theirs) if order == "output_first" else (theirs, ours)
        row, new = self.judgement(order, instruction, first, second)
        p_first = self.judge.first_probability(row)
        if p_first is None:
            if new:
                self._new_invalid.append(row)
                if len(self._new_invalid) >= FAIL_AFTER_INVALID and self._new_valid == 0:
                    raise UserError(self.judge.explain_invalid(self._new_invalid))
            return None, row
        self._new_valid += new
        return (p_first if order == "output_first" else 1.0 - p_first), row


def judge_together(
    pairs: dict[str, list[str]], replies: dict[str, dict[str, str]], judge, caches: dict[tuple[str, str], Path]
) -> None:
    """Fill the judgement cache of every (model, reference) pair (`pairs`: reference -> the models judged
    against it; `caches[model, reference]`) instruction by instruction, ordered so that consecutive judge
    prompts share their longest prefix, which the judge does not decode again
    (Session.next_token_logprobs): per instruction, each reference's reference-first prompts together
    (they share the instruction and the reference reply), then each model's output-first prompts together
    (they share the instruction and the model's reply, when a model is judged against several references)."""
    import contextlib

    from tqdm import tqdm

    references_of: dict[str, list[str]] = {}
    for ref, names in pairs.items():
        for name in names:
            references_of.setdefault(name, []).append(ref)
    instructions = list(dict.fromkeys(q for ref in pairs for q in replies[ref]))
    with contextlib.ExitStack() as stack:
        judgements = {key: stack.enter_context(JudgementCache(judge, path)) for key, path in caches.items()}

        def judge_one(order: str, instruction: str, name: str, ref: str) -> None:
            ours, theirs = replies[name].get(instruction), replies[ref].get(instruction)
            if lacks_reference(judge, instruction):
                return
            if ours is not None and theirs is not None and ours.strip() != theirs.strip():
                judgements[name, ref].preference(order, instruction, ours, theirs)

        for instruction in tqdm(instructions, desc="judging", unit="instruction", disable=None, leave=False):
            for ref, names in pairs.items():
                for name in names:
                    judge_one("reference_first", instruction, name, ref)
            for name, refs in references_of.items():
                for ref in refs:
                    judge_one("output_first", instruction, name, ref)


def check_lined_up(instructions: list[str], reference: dict[str, str], outputs_name: str, reference_name: str) -> None:
    if not instructions:
        raise UserError(f"{outputs_name}: no outputs to judge")
    missing = [instruction for instruction in instructions if instruction not in reference]
    if missing:
        raise UserError(
            f"{outputs_name}: {len(missing)} of {len(instructions)} instructions are not in "
            f"{reference_name} (first: {missing[0][:60]!r}); the files do not line up"
        )


def judge_instructions(
    outputs: dict[str, str],
    reference: dict[str, str],
    judge,
    cache: str | Path,
    limit: int | None = None,
    outputs_name: str = "outputs",
    reference_name: str = "reference",
) -> list[dict]:
    """One row per instruction of `outputs` (the first `limit`): its preference and per-order values.
    Every instruction of `outputs` must be in `reference` (the reference may have more)."""
    instructions = list(outputs)[:limit]
    check_lined_up(instructions, reference, outputs_name, reference_name)
    references = reference_answers_of(judge)
    if references is not None and all(q not in references for q in instructions):
        raise UserError(
            f"{outputs_name}: none of its {len(instructions)} instructions has a reference answer in "
            f"{references.name}; the files do not line up"
        )
    from tqdm import tqdm

    rows = []
    with JudgementCache(judge, cache) as judgements:
        for instruction in tqdm(instructions, desc="judging", unit="pair", disable=None, leave=False):
            ours, theirs = outputs[instruction], reference[instruction]
            row = {
                "instruction": instruction,
                "preference": None,
                "output_first": None,
                "reference_first": None,
                "output_chars": len(ours),
                "reference_chars": len(theirs),
                "identical": ours.strip() == theirs.strip(),
            }
            rows.append(row)
            if lacks_reference(judge, instruction):
                row["no_reference_answer"] = True  # not judged, and not scored
                continue
            if row["identical"]:
                row["preference"] = 0.5
                continue
            judged = judgements.pair(instruction, ours, theirs)
            values = [judged[order] for order in ORDERS if judged[order] is not None]
            row.update({order: judged[order] for order in ORDERS})
            if values:
                row["preference"] = sum(values) / len(values)
    return rows


def summarize(rows: list[dict], judge) -> dict:
    scored = [row for row in rows if row["preference"] is not None]
    preferences = [row["preference"] for row in scored]
    win_rate, standard_error = mean_and_standard_error(preferences)
    judged = [row for row in rows if not row["identical"] and not row.get("no_reference_answer")]
    first_position = [row["output_first"] for row in judged if row["output_first"] is not None] + [
        1.0 - row["reference_first"] for row in judged if row["reference_first"] is not None
    ]
    both_orders = [row for row in judged if judged_both_ways(row)]
    free_preferences, position_biases = [], []
    for row in scored:  # a row judged in one order only (or identical outputs) keeps its preference
        if judged_both_ways(row):
            preference, bias = position_free_preference(row["output_first"], row["reference_first"])
            free_preferences.append(preference)
            position_biases.append(bias)
        else:
            free_preferences.append(row["preference"])
    free_rate, free_error = mean_and_standard_error(free_preferences)
    return {
        "judge": judge.model,
        "win_rate": win_rate,
        "standard_error": standard_error,
        # the same preferences read through a position-bias model (winrate_stats.position_free_preference)
        "position_free_win_rate": free_rate,
        "position_free_standard_error": free_error,
        "position_bias_logit": mean_and_standard_error(position_biases)[0],
        **length_controlled_win_rate(
            preferences, [r["output_chars"] for r in scored], [r["reference_chars"] for r in scored]
        ),
        "instructions": len(rows),
        "scored": len(scored),
        **(
            {}
            if reference_answers_of(judge) is None
            else {
                "no_reference_answer": sum(bool(row.get("no_reference_answer")) for row in rows),
                **reference_answers_of(judge).describe(),
            }
        ),
        "invalid_judgements": sum((row[order] is None) for row in judged for order in ORDERS),
        "first_position_preference": mean_and_standard_error(first_position)[0],
        # how often both orders name the same winner: near 0, the judge mostly picks a position and the win
        # rate rests on how far its probabilities move, not on verdicts
        "order_consistent": (
            sum(
                (row["output_first"] > 0.5) == (row["reference_first"] > 0.5) and row["output_first"] != 0.5
                for row in both_orders
            )
            / len(both_orders)
            if both_orders
            else None
        ),
        "mean_output_chars": sum(r["output_chars"] for r in rows) / len(rows),
        "mean_reference_chars": sum(r["reference_chars"] for r in rows) / len(rows),
    } | agreement_note(getattr(judge, "agreement", None))


def agreement_note(agreement: dict | None) -> dict:
    """The judge's measured agreement with GPT-4, and a warning when it is no better than length."""
    if not agreement:
        return {}
    note = {"judge_agreement_with_gpt4": agreement}
    if agreement["agreement"] - agreement["length_baseline"] < 2 * agreement["difference_se"]:
        note["note"] = (
            "this judge agrees with GPT-4 not clearly more often than 'the longer output wins' "
            f"({agreement['agreement']:.0%} vs {agreement['length_baseline']:.0%} on "
            f"{agreement['pairs']} AlpacaEval pairs): read the length-controlled win rate, "
            "and use --judge-url with a stronger judge for raw win rates"
        )
    return note


def judge_pairs(
    outputs: dict[str, str], reference: dict[str, str], judge, cache: str | Path, limit: int | None = None
) -> dict:
    """Win rate of `outputs` over `reference`, judged in both orders."""
    return summarize(judge_instructions(outputs, reference, judge, cache, limit), judge)


def run_winrate(
    outputs_path: str | Path,
    reference_path: str | Path,
    judge,
    cache: str | Path | None = None,
    limit: int | None = None,
    out_dir: str | Path | None = None,
) -> dict:
    """Judge two output files; with `out_dir`, write results.json and judgements.jsonl there."""
    outputs_path, reference_path = Path(outputs_path), Path(reference_path)
    if cache is None:
        cache = (
            Path(out_dir) / "judge-cache.jsonl"
            if out_dir is not None
            else outputs_path.with_name(f"{outputs_path.stem}.judged-vs-{reference_path.stem}.jsonl")
        )
    rows = judge_instructions(
        load_outputs(outputs_path),
        load_outputs(reference_path),
        judge,
        cache,
        limit,
        str(outputs_path),
        str(reference_path),
    )
    result = {"outputs": str(outputs_path), "reference": str(reference_path), "cache": str(cache)} | summarize(
        rows, judge
    )
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_atomic(out_dir / "judgements.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        write_atomic(out_dir / "results.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def judge_against_references(
    judge, pairs: dict[str, list[str]], generations: dict[str, list[dict]], out_dir: str | Path
) -> dict[str, dict[str, dict]]:
    """Win rates of each model against each of its references (`pairs`: reference -> models), judged in
    both orders together (judge_together); {reference: {model: summary}}. Judgements and per-instruction
    preferences go to OUT_DIR/judgements/MODEL-vs-REFERENCE.*; the judge is closed at the end."""
    for ref, names in pairs.items():
        for name in [ref, *names]:
            if name not in generations:
                raise UserError(f"{name}: no generations to judge (have: {', '.join(generations)})")
    replies = {name: {row["instruction"]: row["output"] for row in rows} for name, rows in generations.items()}
    folder = Path(out_dir) / "judgements"
    caches = {(name, ref): folder / f"{name}-vs-{ref}.jsonl" for ref, names in pairs.items() for name in names}
    for name, ref in caches:
        check_lined_up(list(replies[name]), replies[ref], name, ref)
    results: dict[str, dict[str, dict]] = {ref: {} for ref in pairs}
    try:
        judge_together(pairs, replies, judge, caches)
        for (name, ref), cache in caches.items():
            rows = judge_instructions(replies[name], replies[ref], judge, cache, outputs_name=name, reference_name=ref)
            write_atomic(
                folder / f"{name}-vs-{ref}.preferences.jsonl",
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
            )
            results[ref][name] = summarize(rows, judge) | {"reference": ref}
    finally:
        judge.close()
    return results


def pairwise_judge(judge, reference_name: str | None, out_dir: str | Path):
    """For `compare`: judge every model against the reference model's outputs (default: the last)."""

    def run(generations: dict[str, list[dict]]) -> dict[str, dict]:
        names = list(generations)
        reference = reference_name or names[-1]
        if reference not in generations:
            raise UserError(f"--judge-reference {reference}: not one of the models ({', '.join(names)})")
        pairs = {reference: [name for name in names if name != reference]}
        return judge_against_references(judge, pairs, generations, out_dir)[reference]

    return run


def compare_judge(url: str, model: str | None, reference_name: str | None, out_dir: str | Path):
    """`pairwise_judge` with an OpenAI-compatible endpoint (`compare --judge-url`)."""
    return pairwise_judge(OpenAIJudge(url, model or "judge"), reference_name, out_dir)


def make_judge(
    judge_spec,
    judge_url,
    judge_model,
    threads=None,
    prompt_form=None,
    max_output_tokens=None,
    api_key_env="OPENAI_API_KEY",
    timeout=120.0,
    reference_answers=None,
):
    """The judge the options ask for: in-process (--judge) or an OpenAI-compatible endpoint (--judge-url).
    With `reference_answers` (a file, or reference_answers.ReferenceAnswers) the judge is reference-guided:
    --judge names a reference judge (reference_judges.REFERENCE_JUDGES) or a chat GGUF asked MT-bench's
    reference prompt, and without --judge and --judge-url it is DEFAULT_REFERENCE_JUDGE."""
    if judge_spec and judge_url:
        raise UserError("give either --judge SPEC (in-process) or --judge-url URL, not both")
    if reference_answers is not None:
        from .reference_answers import ReferenceAnswers

        references = (
            reference_answers
            if isinstance(reference_answers, ReferenceAnswers)
            else ReferenceAnswers.load(reference_answers)
        )
        if judge_url:
            return OpenAIJudge(
                judge_url,
                judge_model or "judge",
                api_key_env=api_key_env,
                timeout=timeout,
                reference_answers=references,
            )
        from .reference_judges import DEFAULT_REFERENCE_JUDGE, make_reference_judge

        return make_reference_judge(
            judge_spec or DEFAULT_REFERENCE_JUDGE, references, threads, max_output_tokens, prompt_form
        )
    if judge_spec in _reference_judge_names():
        raise UserError(f"--judge {judge_spec} compares replies with reference answers: give --reference-answers FILE")
    if judge_spec:
        from .local_judge import LocalJudge

        return LocalJudge(
            judge_spec,
            form=prompt_form or DEFAULT_FORM,
            max_output_tokens=max_output_tokens or DEFAULT_MAX_OUTPUT_TOKENS,
            threads=threads,
        )
    if judge_url:
        return OpenAIJudge(judge_url, judge_model or "judge", api_key_env=api_key_env, timeout=timeout)
    return None


def _reference_judge_names():
    from .reference_judges import REFERENCE_JUDGES

    return REFERENCE_JUDGES
