"""The judge's prompt forms: how a pair of outputs is put to a judge, and which two identifiers answer.

A form is a system message, one or more user questions (each judged; the first output's probability is
their mean), an answer prefix the judge's reply starts with, and the identifiers naming the first and the
second output. The in-process judge reads the next-token probabilities of the identifiers right after
the answer prefix; an endpoint judge (`--judge-url`) is sent the `alpaca_eval_2` form (or, with reference
answers, `mt_bench_reference`) and its text reply is parsed.

A reference-guided form (`reference=True`) also shows a reference answer to the instruction (GPT-4's, for
AlpacaEval) before the two outputs, so both orders of a pair share the prompt up to the first output.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError

ALPACA_EVAL_2_SYSTEM = (
    "You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) "
    "based on the quality of their responses to a given instruction. This process will be used to create a "
    "leaderboard reflecting the most accurate and human-preferred answers."
)

# AlpacaEval 2.0's `alpaca_eval_clf_gpt4_turbo` annotator prompt (identifiers m and M).
ALPACA_EVAL_2_USER = '''I require a leaderboard for various large language models. I'll provide you with prompts given to these models and their corresponding outputs. Your task is to assess these responses, and select the model that produces the best output from a human perspective.

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

JUDGE_SYSTEM = "You are a careful, impartial judge of the answers AI assistants give to user instructions."

_PAIR = """## Instruction
{instruction}

## Response (a)
{output_1}

## Response (b)
{output_2}

"""

DIRECT_USER = _PAIR + "Which response is better, (a) or (b)?"

RUBRIC_USER = _PAIR + (
    "Which response is better, (a) or (b)? The better response does what the instruction asks, is correct "
    "and helpful, and is clear. Length alone does not make a response better; a response that ignores, "
    "repeats or refuses the instruction without reason is worse."
)

CRITERIA_USERS = (
    _PAIR + "Which response does more exactly what the instruction asks, (a) or (b)?",
    _PAIR + "Which response is more correct and accurate, (a) or (b)?",
    _PAIR + "Which response is more helpful to the person who wrote the instruction, (a) or (b)?",
)

# MT-bench's reference-guided pairwise prompt (FastChat llm_judge, `pair-math-v1`), with one change: the
# judge gives its verdict at once (it is read from next-token probabilities after "[["), so "After
# providing your explanation, output your final verdict" becomes "Output your final verdict".
MT_BENCH_REFERENCE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user question displayed below. Your evaluation should consider correctness and helpfulness. You "
    "will be given a reference answer, assistant A's answer, and assistant B's answer. Your job is to evaluate "
    "which assistant's answer is better. Begin your evaluation by comparing both assistants' answers with the "
    "reference answer. Identify and correct any mistakes. Avoid any positional biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of "
    "the responses to influence your evaluation. Do not favor certain names of the assistants. Be as "
    'objective as possible. Output your final verdict by strictly following this format: "[[A]]" if '
    'assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
MT_BENCH_REFERENCE_USER = (
    "[User Question]\n{instruction}\n\n"
    "[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n"
    "[The Start of Assistant A's Answer]\n{output_1}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{output_2}\n[The End of Assistant B's Answer]"
)

ANSWER_PREFIX = "The better response is ("
DEFAULT_MAX_OUTPUT_TOKENS = 400  # each output is cut to this many judge tokens, the instruction to twice that


@dataclass(frozen=True)
class PromptForm:
    name: str
    system: str
    questions: tuple[str, ...]  # user turns formatted with instruction, output_1, output_2
    answer_prefix: str
    identifiers: tuple[str, str]  # naming output_1 and output_2
    about: str
    reference: bool = False  # the question shows a reference answer (format field {reference})

    def messages(
        self, question: str, instruction: str, output_1: str, output_2: str, reference: str | None = None
    ) -> list[dict]:
        if self.reference and reference is None:
            raise UserError(f"judge prompt form {self.name!r} needs reference answers (--reference-answers FILE)")
        fields = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
        user = question.format(**(fields | {"reference": reference} if self.reference else fields))
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


PROMPT_FORMS = {
    form.name: form
    for form in (
        PromptForm(
            "alpaca_eval_2",
            ALPACA_EVAL_2_SYSTEM,
            (ALPACA_EVAL_2_USER,),
            "",
            ("m", "M"),
            "AlpacaEval 2's GPT-4-turbo annotator prompt; the reply's first token is m or M",
        ),
        PromptForm(
            "direct",
            JUDGE_SYSTEM,
            (DIRECT_USER,),
            ANSWER_PREFIX,
            ("a", "b"),
            f'a short "which response is better, (a) or (b)" with the answer prefix "{ANSWER_PREFIX}"',
        ),
        PromptForm(
            "rubric",
            JUDGE_SYSTEM,
            (RUBRIC_USER,),
            ANSWER_PREFIX,
            ("a", "b"),
            "the direct question with a three-line rubric (does what was asked, correct, clear; length is no merit)",
        ),
        PromptForm(
            "criteria",
            JUDGE_SYSTEM,
            CRITERIA_USERS,
            "The answer is (",
            ("a", "b"),
            "three per-criterion questions (follows the instruction, correct, helpful), averaged; "
            "three prefills per judgement",
        ),
        PromptForm(
            "mt_bench_reference",
            MT_BENCH_REFERENCE_SYSTEM,
            (MT_BENCH_REFERENCE_USER,),
            "[[",
            ("A", "B"),
            "MT-bench's reference-guided pairwise prompt (pair-math-v1): the reference answer, then "
            'assistant A and B; the verdict read after "[["',
            reference=True,
        ),
    )
}
DEFAULT_FORM = "alpaca_eval_2"  # agrees best with GPT-4 on the dev pairs (README, scripts/judge_agreement.py)
REFERENCE_FORM = "mt_bench_reference"  # the form of an in-process judge given reference answers


def get_form(name: str) -> PromptForm:
    try:
        return PROMPT_FORMS[name]
    except KeyError:
        raise UserError(f"unknown judge prompt form {name!r} (known: {', '.join(PROMPT_FORMS)})") from None
