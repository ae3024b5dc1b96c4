"""The paper's data sets: each one's files in the data home, where they come from, licence and checksums.

A file is downloaded from its public URL as is or, when the local file is derived from an upstream one
(AlpacaEval's), passed through a named transform; either way what lands must have the sha256 recorded
here. URLs are pinned to a commit whose file has that checksum, so a moved branch cannot change the data.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import UserError


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to the data home, e.g. "val/val.jsonl"
    sha256: str  # of the file as it must end up in the data home
    url: str | None  # the public upstream file; None: no trustworthy download is known
    derive: Callable[[bytes], bytes] | None = None  # upstream bytes -> this file's bytes
    name: str | None = None  # what verbs accept instead of the path, e.g. `--input val`
    by_hand: str = ""  # with url None: where to get the file and where to put it


@dataclass(frozen=True)
class DataSet:
    name: str
    description: str
    source: str
    licence: str
    date: str  # of the pinned upstream version
    files: tuple[DataFile, ...]


# --- transforms for derived files --------------------------------------------------------------------


def _json_rows(upstream: bytes, what: str) -> list[dict]:
    try:
        rows = json.loads(upstream)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{what}: the download is not JSON ({exc})") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise UserError(f"{what}: the download is not a JSON list of objects")
    return rows


def _jsonl(rows: Iterable[dict], ensure_ascii: bool) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows).encode("utf-8")


def _keep(rows: list[dict], keys: tuple[str, ...], what: str) -> list[dict]:
    try:
        return [{key: row[key] for key in keys} for row in rows]
    except KeyError as exc:
        raise UserError(f"{what}: a row of the download lacks {exc}") from None


def alpaca_eval_instructions(upstream: bytes) -> bytes:
    """AlpacaEval's `results/text_davinci_003/model_outputs.json` -> `{"instruction","dataset"}` a line."""
    rows = _json_rows(upstream, "alpaca_eval.jsonl")
    return _jsonl(_keep(rows, ("instruction", "dataset"), "alpaca_eval.jsonl"), ensure_ascii=True)


JUDGE_DEV_KEYS = ("instruction", "output_1", "generator_1", "output_2", "generator_2", "annotator", "preference")


def judge_dev_pairs(upstream: bytes) -> bytes:
    """An AlpacaEval 1 `annotations.json` -> GPT-4's preference between two outputs, a pair a line."""
    rows = _json_rows(upstream, "judge_dev")
    return _jsonl(_keep(rows, JUDGE_DEV_KEYS, "judge_dev"), ensure_ascii=True)


def reference_answers(upstream: bytes) -> bytes:
    """A model's AlpacaEval `model_outputs.json` -> `{"instruction","output","generator"}` a line."""
    rows = _json_rows(upstream, "references")
    return _jsonl(_keep(rows, ("instruction", "output", "generator"), "references"), ensure_ascii=False)


def github_blob_content(upstream: bytes) -> bytes:
    """GitHub's `git/blobs/SHA` answer (JSON, the content base64-encoded) -> the blob's bytes."""
    try:
        answer = json.loads(upstream)
        return base64.b64decode(answer["content"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise UserError("the GitHub blob answer has no base64 `content`") from None


# --- the registry ------------------------------------------------------------------------------------


def github_raw(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


IMPLICIT_INS = ("john-hewitt/implicit-ins", "fe1c2d8d5d66e44bb7c51cf47a5921e08a4b500d")
ALPACA_EVAL = ("tatsu-lab/alpaca_eval", "cd543a149df89434d8a54582c0151c0b945c3d20")
GOOGLE_RESEARCH = ("google-research/google-research", "19638399cc9e03623c5b9087a1d6fa8813974ce9")
GSM8K = ("openai/grade-school-math", "3101c7d5072418e28b9008a6636bde82a006892c")
# SOURCE.md names MBPP's file by git blob, not by commit; GitHub serves a blob by its id.
MBPP_BLOB = (
    "https://api.github.com/repos/google-research/google-research/git/blobs/96e2dc2f7dd95b7b87b38dc46e42cbed444251bb"
)
POETRY = ("anuragjain0610/Poems-Genre-Predictor-NLP-", "ad58a95d103cb39a732fe5e82f614c2a5532c034")
RECIPES = ("RetroCaterpillar/Recepie-Generator", "17ba81238e86251933e2718655302ece8d0fa231")
LICHESS_SAMPLE = ("kdave/pgn-toys", "65c9aed6d3749e8951b6597558095ce79d697c0a")
ONE_ACCOUNT = ("Allan-Cao/Magnus-Carlsen-Chess-Games", "709dea42fedc34b9e4a00c5c102130b3885af97a")


def _alpaca_eval_result(path: str) -> str:
    return github_raw(*ALPACA_EVAL, f"results/{path}")


SETS: dict[str, DataSet] = {
    s.name: s
    for s in (
        DataSet(
            "lima",
            "LIMA's 1,030 training conversations as the paper prepared them (instruction tuning)",
            "Zhou et al. 2023, LIMA; john-hewitt/implicit-ins new_lima/lima_data.jsonl",
            "CC BY-NC-SA 4.0 (non-commercial)",
            "2024-06-26",
            (
                DataFile(
                    "lima/lima_data.jsonl",
                    "c15ce7cacc2696192727351f4392dc059608dc5a96d69bb69f8ca461725c15b1",
                    github_raw(*IMPLICIT_INS, "new_lima/lima_data.jsonl"),
                    name="lima",
                ),
            ),
        ),
        DataSet(
            "val",
            "the paper's 56 development instructions (choosing epochs; not for training)",
            "Hewitt et al. 2024; john-hewitt/implicit-ins eval/val_eval/val.jsonl",
            "Apache-2.0 (the implicit-ins repository's licence)",
            "2024-07-05",
            (
                DataFile(
                    "val/val.jsonl",
                    "97495f6826ac319cdfde133d8ed9dfe537ca5afd762e57491718e3d8b0d413fd",
                    github_raw(*IMPLICIT_INS, "eval/val_eval/val.jsonl"),
                    name="val",
                ),
            ),
        ),
        DataSet(
            "alpaca_eval",
            "AlpacaEval's 805 instructions (the paper's win rates), GPT-4 preference pairs and reference answers",
            "tatsu-lab/alpaca_eval results/ at commit cd543a149df8, reduced (outputs or fields dropped)",
            "CC BY-NC 4.0 (data; code Apache-2.0)",
            "2025-08-09",
            (
                DataFile(
                    "alpaca_eval/alpaca_eval.jsonl",
                    "b5db4fec6d28469df1b7a70859decd2387a8065654e9b1d3cca537d2f26371f3",
                    _alpaca_eval_result("text_davinci_003/model_outputs.json"),
                    alpaca_eval_instructions,
                    name="alpaca_eval",
                ),
                DataFile(
                    "alpaca_eval/judge_dev/falcon-7b-instruct.jsonl",
                    "82d31317d622e297693e27ddeb7510258bac75d82aa7e1f21795361311853c37",
                    _alpaca_eval_result("falcon-7b-instruct/alpaca_eval_gpt4/annotations.json"),
                    judge_dev_pairs,
                ),
                DataFile(
                    "alpaca_eval/judge_dev/phi-2.jsonl",
                    "adca534d649bef8187eff206a864b34cef71b8bad52974cde3dce28d0d39b614",
                    _alpaca_eval_result("phi-2/alpaca_eval_gpt4/annotations.json"),
                    judge_dev_pairs,
                ),
                DataFile(
                    "alpaca_eval/references/gpt4.jsonl",
                    "930a24e8588f21deadb0dad5aec78b5a11585665bd313b2598f9988146f1c53b",
                    _alpaca_eval_result("gpt4/model_outputs.json"),
                    reference_answers,
                    name="gpt4",
                ),
                DataFile(
                    "alpaca_eval/references/gpt4_1106_preview.jsonl",
                    "07b9723e8beab3c36a044ad33826f775f9711df87be8151315c7760fb4a16e1f",
                    _alpaca_eval_result("gpt4_1106_preview/model_outputs.json"),
                    reference_answers,
                    name="gpt4_1106_preview",
                ),
            ),
        ),
        DataSet(
            "ifeval",
            "IFEval's 541 prompts with verifiable instructions",
            "Zhou et al. 2023, IFEval; google-research instruction_following_eval/data/input_data.jsonl",
            "Apache-2.0",
            "2023-11 (release; pinned at commit 19638399)",
            (
                DataFile(
                    "ifeval/input_data.jsonl",
                    "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49",
                    github_raw(*GOOGLE_RESEARCH, "instruction_following_eval/data/input_data.jsonl"),
                    name="ifeval",
                ),
            ),
        ),
        DataSet(
            "gsm8k",
            "GSM8K grade-school maths, train 7,473 and test 1,319 (a single-task set)",
            "Cobbe et al. 2021; openai/grade-school-math grade_school_math/data/",
            "MIT",
            "2021-10-28",
            (
                DataFile(
                    "gsm8k/train.jsonl",
                    "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
                    github_raw(*GSM8K, "grade_school_math/data/train.jsonl"),
                    name="gsm8k",
                ),
                DataFile(
                    "gsm8k/test.jsonl",
                    "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
                    github_raw(*GSM8K, "grade_school_math/data/test.jsonl"),
                ),
            ),
        ),
        DataSet(
            "mbpp",
            "MBPP's 974 Python tasks (a single-task set; the paper trains on 601-974)",
            "Austin et al. 2021; google-research mbpp/mbpp.jsonl, git blob 96e2dc2f",
            "CC BY 4.0",
            "2021-08 (release; the revision with fixed tasks 341, 596, 642)",
            (
                DataFile(
                    "mbpp/mbpp.jsonl",
                    "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
                    MBPP_BLOB,
                    github_blob_content,
                    name="mbpp",
                ),
            ),
        ),
        DataSet(
            "poetry",
            "573 poems from poetryfoundation.org (a single-task set; HF merve/poetry's source)",
            "Kaggle 'Poems from poetryfoundation.org'; anuragjain0610/Poems-Genre-Predictor-NLP- poems.csv",
            "none stated (research use; the Renaissance poems are public domain)",
            "2019-04-15",
            (
                DataFile(
                    "poetry/poems.csv",
                    "17a188e62f12dd198452c09695d9b88761a472a01c81d731e8cf95aa2241b363",
                    github_raw(*POETRY, "poems.csv"),
                    name="poetry",
                ),
            ),
        ),
        DataSet(
            "recipes",
            "2,000 Epicurious recipes (a single-task set; a sample of HF Hieu-Pham/kaggle_food_recipes' source)",
            "Kaggle 'Food Ingredients and Recipe Dataset with Images'; RetroCaterpillar/Recepie-Generator",
            "none stated (research use)",
            "2024-12-20",
            (
                DataFile(
                    "recipes/13k-recipes.csv",
                    "72854953da3f55dab2a76ba3b215631b956abfc2cb09206035aba0aece559c9e",
                    github_raw(*RECIPES, "13k-recipes.csv"),
                    name="recipes",
                ),
            ),
        ),
        DataSet(
            "chess",
            "Lichess games as PGN: 999 rated games of 2021-10-01, and 984 of one account (a single-task set)",
            "Lichess game database; kdave/pgn-toys lichess.pgn, Allan-Cao/Magnus-Carlsen-Chess-Games",
            "CC0 (Lichess game database)",
            "2022-01-04",
            (
                DataFile(
                    "chess/lichess.pgn",
                    "18e004810cce908b13f797169c70596c50656ae005a79c19a19d35490a85d4a9",
                    github_raw(*LICHESS_SAMPLE, "lichess.pgn"),
                    name="chess",
                ),
                DataFile(
                    "chess/lichess_DrDrunkenstein_2019-01-29.pgn",
                    "a7da3be57c2743cc7d1a344975d7a8fb9c9a0db0e1b149b9081e59000164a7a2",
                    github_raw(*ONE_ACCOUNT, "lichess_DrDrunkenstein_2019-01-29.pgn"),
                ),
            ),
        ),
    )
}


def named_files(sets: dict[str, DataSet] | None = None) -> dict[str, tuple[DataSet, DataFile]]:
    """The names verbs accept for a data file (`val`, `alpaca_eval`, `gpt4`, ...) -> its set and file."""
    sets = SETS if sets is None else sets
    return {file.name: (data_set, file) for data_set in sets.values() for file in data_set.files if file.name}
