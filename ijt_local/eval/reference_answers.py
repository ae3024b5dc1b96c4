"""Reference answers for reference-guided judging: a good answer to each instruction (for AlpacaEval, GPT-4's:
`--reference-answers gpt4`, alpaca_eval/references/gpt4.jsonl in the data home), shown to an LLM judge or
compared with each reply.

A file is JSONL rows with `instruction` and `output` (or `messages` ending in the assistant's answer), as
AlpacaEval's reference outputs are. A reply whose instruction has no reference answer is not judged at all:
the judge counts it (`no_reference_answer` in the summary) and the win rate is over the others.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import UserError
from .prompt_sets import load_outputs


class ReferenceAnswers:
    """instruction -> reference answer, from one file (or a dict, for tests and the library)."""

    def __init__(self, answers: dict[str, str], name: str = "reference answers"):
        if not answers:
            raise UserError(f"{name}: no reference answers")
        self.answers = dict(answers)
        self.name = name
        # what the answers are, by content: a judgement cache key includes each pair's own answer, this
        # names the whole set in a summary
        self.digest = hashlib.sha256(json.dumps(sorted(self.answers.items())).encode()).hexdigest()[:16]

    @classmethod
    def load(cls, path: str | Path) -> ReferenceAnswers:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--reference-answers {path}: no such file")
        answers = load_outputs(path)
        empty = [q for q, a in answers.items() if not a.strip()]
        if empty:
            raise UserError(f"{path}: the reference answer to {empty[0][:60]!r} is empty")
        return cls(answers, str(path))

    def get(self, instruction: str) -> str | None:
        return self.answers.get(instruction)

    def __contains__(self, instruction: str) -> bool:
        return instruction in self.answers

    def __len__(self) -> int:
        return len(self.answers)

    def describe(self) -> dict:
        return {
            "reference_answers": self.name,
            "reference_answers_count": len(self),
            "reference_answers_sha": self.digest,
        }
