"""Pairwise judge (AlpacaEval style): for each instruction, which of two outputs is better, asked of any
OpenAI-compatible chat endpoint (a hosted API or a local `python -m llama_cpp.server`).

Every pair is judged in both orders (output first, reference first) so the judge's position bias cancels;
an instruction scores 1 if the output wins both, 0.5 if the orders disagree, 0 if the reference wins
both, and identical outputs score 0.5 without a request. Win rate is the mean score with its standard
error (sample sd / sqrt(n)). Replies that name neither model are counted as invalid and left out.
Each judgement is appended to a JSONL cache as it arrives, keyed by judge model, prompt and order, so an
interrupted or failed run resumes without asking again.

The prompt is AlpacaEval 2.0's `alpaca_eval_clf_gpt4_turbo` annotator prompt (identifiers m and M).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import UserError
from ..jsonl import JsonlAppender, read_completed_rows

SYSTEM_PROMPT = (
    "You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) "
    "based on the quality of their responses to a given instruction. This process will be used to create a "
    "leaderboard reflecting the most accurate and human-preferred answers."
)

USER_PROMPT = '''I require a leaderboard for various large language models. I'll provide you with prompts given to these models and their corresponding outputs. Your task is to assess these responses, and select the model that produces the best output from a human perspective.

## Instruction

{{
    "instruction": """{instruction}""",
}}

## Model Outputs

Here are the unordered outputs from the models. Each output is associated with a specific model, identified by a unique model identifier.

{{
    {{
        "model_identifier": "m",
        "output": """{output_1}"""
    }},
    {{
        "model_identifier": "M",
        "output": """{output_2}"""
    }}
}}

## Task

Evaluate the models based on the quality and relevance of their outputs, and select the model that generated the best output. Answer by providing the model identifier of the best model. We will use your output as the name of the best model, so make sure your output only contains one of the following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.

## Best Model Identifier'''


def judge_messages(instruction: str, output_1: str, output_2: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT.format(instruction=instruction, output_1=output_1,
                                                        output_2=output_2)},
    ]


def parse_preference(reply: str) -> int | None:
    """1 if the judge picked the first output (m), 2 for the second (M), None if it named neither."""
    match = re.match(r"""^[\s"'`*]*(?i:model[_ ]?(?:identifier)?\s*[:=]?\s*)?([mM])\b""", reply) or re.search(
        r"""(?i:identifier|best model|answer)\W*(?i:is\W*)?([mM])\b""", reply  # "The best model identifier is: m"
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

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0,
                 max_tokens: int = 16):
        self.url = chat_completions_url(base_url)
        self.model = model
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.timeout = timeout
        self.max_tokens = max_tokens

    def complete(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0,
                           "max_tokens": self.max_tokens}).encode()
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


def judgement_key(model: str, order: str, instruction: str, first: str, second: str) -> str:
    return hashlib.sha256(json.dumps([model, order, instruction, first, second]).encode()).hexdigest()


def load_outputs(path: str | Path) -> dict[str, str]:
    """instruction -> output from an AlpacaEval-style JSONL (instruction/output, or messages)."""
    from .prompt_sets import load_prompts

    table = {}
    for prompt in load_prompts(path):
        output = prompt.row.get("output", prompt.reference)
        if output is None:
            raise UserError(f"{path}: row {prompt.id} has no output")
        table[prompt.instruction] = str(output)
    return table


def judge_pairs(outputs: dict[str, str], reference: dict[str, str], judge, cache: str | Path,
                limit: int | None = None) -> dict:
    """Win rate of `outputs` over `reference` on their shared instructions (the first `limit`), judged in
    both orders."""
    shared = [instruction for instruction in outputs if instruction in reference][:limit]
    if not shared:
        raise UserError("the outputs and the reference share no instruction")
    cache = Path(cache)
    done = {row["key"]: row for row in read_completed_rows(cache)}
    scores, invalid, first_wins, valid = [], 0, 0, 0
    with JsonlAppender(cache) as appender:
        for instruction in shared:
            ours, theirs = outputs[instruction], reference[instruction]
            if ours.strip() == theirs.strip():
                scores.append(0.5)
                continue
            wins = []
            for order, (first, second) in (("output_first", (ours, theirs)), ("reference_first", (theirs, ours))):
                key = judgement_key(judge.model, order, instruction, first, second)
                if key not in done:
                    reply = judge.complete(judge_messages(instruction, first, second))
                    done[key] = {"key": key, "order": order, "instruction": instruction, "reply": reply}
                    appender.write(done[key])
                picked = parse_preference(done[key]["reply"])
                if picked is None:
                    invalid += 1
                    continue
                valid += 1
                first_wins += picked == 1
                wins.append(1.0 if (picked == 1) == (order == "output_first") else 0.0)
            if wins:
                scores.append(sum(wins) / len(wins))
    n = len(scores)
    mean = sum(scores) / n if n else None
    se = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1) / n) if n > 1 else None
    return {
        "judge": judge.model,
        "win_rate": mean,
        "standard_error": se,
        "instructions": len(shared),
        "scored": n,
        "invalid_judgements": invalid,
        "first_position_preference": first_wins / valid if valid else None,
    }


def run_winrate(outputs_path: str | Path, reference_path: str | Path, judge, cache: str | Path | None = None,
                limit: int | None = None) -> dict:
    outputs_path, reference_path = Path(outputs_path), Path(reference_path)
    if cache is None:
        cache = outputs_path.with_name(f"{outputs_path.stem}.judged-vs-{reference_path.stem}.jsonl")
    result = judge_pairs(load_outputs(outputs_path), load_outputs(reference_path), judge, cache, limit)
    return {"outputs": str(outputs_path), "reference": str(reference_path), "cache": str(cache)} | result


def compare_judge(url: str, model: str | None, reference_name: str | None, out_dir: str | Path):
    """For `compare --judge-url`: judge every model against the reference model's outputs."""
    judge = OpenAIJudge(url, model or "judge")

    def run(generations: dict[str, list[dict]]) -> dict[str, dict]:
        names = list(generations)
        reference = reference_name or names[-1]
        if reference not in generations:
            raise UserError(f"--judge-reference {reference}: not one of the models ({', '.join(names)})")
        ref = {row["instruction"]: row["output"] for row in generations[reference]}
        results = {}
        for name in names:
            if name == reference:
                continue
            ours = {row["instruction"]: row["output"] for row in generations[name]}
            cache = Path(out_dir) / "judgements" / f"{name}-vs-{reference}.jsonl"
            results[name] = judge_pairs(ours, ref, judge, cache) | {"reference": reference}
        return results

    return run
