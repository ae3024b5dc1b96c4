"""How often a judge agrees with GPT-4 on the AlpacaEval dev pairs, against "the longer output wins" on the
same pairs, and the cross-fit that gives the reference-guided judges their weights.

A dev pair is one AlpacaEval 1 annotation: an instruction, two outputs and GPT-4's preference (1 or 2;
0 or missing = no decision, skipped). `load_pairs` pools the decided pairs of every file of a folder,
shuffled with a seed, so a larger sample extends the same one.

    measure_agreement   an in-process LLM judge on the first n pairs, both orders, through a judgement
                        cache (resumable); `summarize` turns its judgements into the agreement figures
    validate_reference_judges
                        every judge of reference_judges.REFERENCE_JUDGES on all decided pairs: each
                        calibrated judge is fitted on one dev set and tested on the other, both ways
                        (`cross_fit`), so its agreement is out of sample; the weights fitted on all pairs
                        are the ones REFERENCE_JUDGES carries

Agreement with GPT-4 counts a tie (a preference of exactly 0.5, a score of 0, or no valid judgement) as
half. Standard errors are winrate_stats.mean_and_standard_error's; the paired difference against length is
the mean of the per-pair differences, with its own standard error.

scripts/judge_agreement.py is the command line; its lines are docs/judge-agreement.jsonl.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from pathlib import Path

import numpy as np

from ..data.home import shared_data_path
from ..errors import UserError
from ..jsonl import iter_jsonl, read_completed_rows
from .judge import ORDERS, JudgementCache, judgement_key
from .judge_prompts import DEFAULT_MAX_OUTPUT_TOKENS, REFERENCE_FORM
from .local_judge import LocalJudge
from .reference_answers import ReferenceAnswers
from .reference_judges import (
    DEFAULT_REFERENCE_JUDGE,
    REFERENCE_JUDGES,
    fit_symmetric_logistic,
    length_feature,
    llm_feature,
    similarity_function,
)
from .winrate_stats import mean_and_standard_error

DEFAULT_DATA = shared_data_path("alpaca_eval/judge_dev")
DEFAULT_REFERENCES = shared_data_path("alpaca_eval/references/gpt4.jsonl")
LENGTH_JUDGE = "longer output wins"  # the baseline row of validate_reference_judges


def load_pairs(data_dir: Path, n: int | None, seed: int) -> list[dict]:
    """The decided pairs of every file, shuffled with `seed`; the first `n` (None: all)."""
    files = sorted(Path(data_dir).glob("*.jsonl"))
    if not files:
        raise UserError(f"{data_dir}: no *.jsonl annotation files")
    pool = []
    for path in files:
        for row in iter_jsonl(path):
            if row.get("preference") in (1, 2):  # 1.0 / 2.0 compare equal
                pool.append(
                    {
                        "file": path.stem,
                        "instruction": row["instruction"],
                        "output_1": row["output_1"],
                        "output_2": row["output_2"],
                        "gpt4": int(row["preference"]),
                    }
                )
    random.Random(seed).shuffle(pool)
    return pool[:n]


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of at least one value; the standard error of one value is NaN."""
    mean, se = mean_and_standard_error(values)
    return mean, math.nan if se is None else se


def _mean(values) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 4) if values else None


def agreement(preference_for_2: float | None, gpt4: int) -> float:
    """A judge's preference for output_2 (0..1) against GPT-4's pick (1 or 2); 0.5 or none counts half."""
    if preference_for_2 is None or preference_for_2 == 0.5:
        return 0.5
    return float((preference_for_2 > 0.5) == (gpt4 == 2))


def verdict_agreement(score: float, gpt4: int) -> float:
    """A signed score for output_2 (> 0: output_2 better) against GPT-4's pick; 0 counts half."""
    return 0.5 if score == 0 else float((score > 0) == (gpt4 == 2))


def paired(values: list[float], baseline: list[float]) -> dict:
    """Agreement per pair against the length baseline's on the same pairs, and their paired difference."""
    agree, agree_se = mean_se(values)
    length, length_se = mean_se(baseline)
    difference, difference_se = mean_se([a - b for a, b in zip(values, baseline)])
    return {
        "pairs": len(values),
        "agreement": round(agree, 4),
        "agreement_se": round(agree_se, 4),
        "length_baseline": round(length, 4),
        "length_baseline_se": round(length_se, 4),
        "difference_vs_length": round(difference, 4),
        "difference_vs_length_se": round(difference_se, 4),
    }


def judge_pairs(judge, pairs: list[dict], cache_path: Path, max_seconds: float | None = None, progress=None):
    """Judge each pair in both orders (output_2 as "ours") through a JudgementCache, until `max_seconds`
    have passed; rows for `summarize`. Pairs whose outputs are equal are not judged (no values).
    `progress(done, total)` is called after each judged pair."""
    started = time.perf_counter()
    rows = []
    with JudgementCache(judge, cache_path) as cache:
        for index, pair in enumerate(pairs):
            if max_seconds is not None and time.perf_counter() - started > max_seconds:
                break
            ours, theirs = pair["output_2"], pair["output_1"]
            if ours.strip() == theirs.strip():
                rows.append({"gpt4": pair["gpt4"], "values": {}, "judgements": [], "pair": pair})
                continue
            judged = cache.pair(pair["instruction"], ours, theirs)
            rows.append(
                {
                    "gpt4": pair["gpt4"],
                    "values": {o: judged[o] for o in ORDERS},
                    "judgements": judged["rows"],
                    "pair": pair,
                }
            )
            if progress is not None:
                progress(index + 1, len(pairs))
    return rows


def summarize(rows: list[dict], judge: str, form: str, max_output_tokens: int, seed: int, requested: int) -> dict:
    """Agreement of judged rows (judge_pairs) with GPT-4: order-averaged and per order, the length and
    majority baselines, position and length bias, and the judge's speed."""
    judge_agree, length_agree, order_agree = [], [], {order: [] for order in ORDERS}
    picks_longer, first_position, invalid = [], [], 0
    for row in rows:
        gpt4, values, pair = row["gpt4"], row["values"], row["pair"]
        valid = [v for v in values.values() if v is not None]
        invalid += sum(v is None for v in values.values())
        preference = statistics.fmean(valid) if valid else None
        judge_agree.append(agreement(preference, gpt4))
        for order in ORDERS:
            if values.get(order) is not None:
                order_agree[order].append(agreement(values[order], gpt4))
                first_position.append(values[order] if order == "output_first" else 1 - values[order])
        length_2, length_1 = len(pair["output_2"]), len(pair["output_1"])
        length_agree.append(0.5 if length_2 == length_1 else float((length_2 > length_1) == (gpt4 == 2)))
        if preference is not None and preference != 0.5 and length_2 != length_1:
            picks_longer.append(float((preference > 0.5) == (length_2 > length_1)))
    n = len(rows)
    if n == 0:
        raise UserError("no pair was judged (raise --max-seconds)")
    by_file = {}
    for row, judge_value, length_value in zip(rows, judge_agree, length_agree):
        entry = by_file.setdefault(row["pair"]["file"], {"pairs": 0, "agreement": [], "length_baseline": []})
        entry["pairs"] += 1
        entry["agreement"].append(judge_value)
        entry["length_baseline"].append(length_value)
    for entry in by_file.values():
        entry["agreement"], entry["length_baseline"] = _mean(entry["agreement"]), _mean(entry["length_baseline"])
    judgements = [j for row in rows for j in row["judgements"]]
    seconds = [j["seconds"] for j in judgements]
    gpt4_prefers_1 = statistics.fmean(float(row["gpt4"] == 1) for row in rows)
    return {
        "judge": judge,
        "form": form,
        "max_output_tokens": max_output_tokens,
        "seed": seed,
        "pairs_requested": requested,
        "pairs": n,
        "complete": n == requested,
        **paired(judge_agree, length_agree),  # its "pairs" (n again) keeps the place above
        "chance": 0.5,
        "majority_baseline": round(max(gpt4_prefers_1, 1 - gpt4_prefers_1), 4),
        "agreement_output_first_only": _mean(order_agree["output_first"]),
        "agreement_reference_first_only": _mean(order_agree["reference_first"]),
        "first_position_preference": _mean(first_position),
        "judge_picks_longer": _mean(picks_longer),
        "invalid_judgements": invalid,
        "seconds_per_judgement": _mean(seconds),
        "seconds_per_pair": round(2 * statistics.fmean(seconds), 2) if seconds else None,
        "by_file": by_file,
        "mean_prompt_tokens": round(statistics.fmean(j["prompt_tokens"] for j in judgements)) if judgements else None,
    }


def time_384(judge, pairs: list[dict]) -> dict:
    """Seconds for one order of a pair of two replies of exactly 384 judge tokens (not cached)."""
    judge.load()
    text = "\n\n".join(p["output_1"] for p in pairs)
    tokens = judge.session.tokenize(text, special=False)
    while len(tokens) < 768:  # a tiny sample: repeat its text
        tokens = tokens * 2
    first, second = judge.session.detokenize(tokens[:384]), judge.session.detokenize(tokens[384:768])
    instruction = pairs[0]["instruction"]
    seconds, prompt_tokens = [], 0
    for a, b in ((first, second), (second, first), (first, second)):
        row = judge.judge(instruction, a, b)
        seconds.append(row["seconds"])
        prompt_tokens = row["prompt_tokens"]
    return {
        "seconds_per_judgement_384": round(min(seconds), 2),
        "seconds_per_pair_384": round(2 * min(seconds), 2),
        "prompt_tokens_384": prompt_tokens,
    }


def measure_agreement(
    judge_spec: str,
    data: Path,
    pairs: int | None,
    seed: int,
    cache: Path,
    form: str | None = None,
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS,
    threads: int | None = None,
    reference_answers: Path | None = None,
    max_seconds: float | None = None,
    speed: bool = False,
    progress=None,
) -> dict:
    """The in-process judge `judge_spec` on the first `pairs` dev pairs (None: all): `summarize`'s figures,
    with `time_384`'s when `speed`."""
    sample = load_pairs(data, pairs, seed)
    references = None if reference_answers is None else ReferenceAnswers.load(reference_answers)
    judge = LocalJudge(
        judge_spec,
        form=form,
        max_output_tokens=max_output_tokens,
        threads=threads,
        reference_answers=references,
    )
    try:
        rows = judge_pairs(judge, sample, cache, max_seconds, progress)
        timing = time_384(judge, sample) if speed else {}
    finally:
        judge.close()
    return summarize(rows, judge_spec, judge.form.name, max_output_tokens, seed, len(sample)) | timing


def cross_fit(features: np.ndarray, wins: np.ndarray, groups: np.ndarray, held_out_groups) -> tuple:
    """Out-of-sample scores of a symmetric logistic judge: each group's rows scored by the weights fitted
    on the other groups (rows of a group that cannot be held out, with fewer than 2 rows left to fit on,
    score 0). Returns (scores, {group: weights fitted without it}, weights fitted on all rows)."""
    scores = np.zeros(len(wins))
    without = {}
    for held_out in held_out_groups:
        train, test = groups != held_out, groups == held_out
        if train.sum() < 2 or test.sum() < 1:
            continue
        w = fit_symmetric_logistic(features[train], wins[train])
        scores[test] = features[test] @ w
        without[held_out] = w
    return scores, without, fit_symmetric_logistic(features, wins)


def cached_llm_values(pairs: list[dict], references: ReferenceAnswers, llm_judge, llm_rows: dict) -> list:
    """Per pair, the reference-guided LLM judge's P(first wins) in both orders (output_2 first, then
    output_1 first) and their seconds, from a judgement cache's rows by key; None where an order is missing."""
    values = [None] * len(pairs)
    for i, p in enumerate(pairs):
        reference = references.get(p["instruction"])
        ab = llm_rows.get(
            judgement_key(llm_judge.cache_id, "output_first", p["instruction"], p["output_2"], p["output_1"], reference)
        )
        ba = llm_rows.get(
            judgement_key(
                llm_judge.cache_id, "reference_first", p["instruction"], p["output_1"], p["output_2"], reference
            )
        )
        if ab is not None and ba is not None:
            values[i] = {
                "values": [llm_judge.first_probability(ab), llm_judge.first_probability(ba)],
                "seconds": ab["seconds"] + ba["seconds"],
            }
    return values


class _Validation:
    """The pairs of validate_reference_judges, their features (of output_2 over output_1) and the length
    baseline's agreement, for one judge's line at a time."""

    def __init__(self, pairs: list[dict], columns: dict, reference_name: str):
        self.pairs = pairs
        self.columns = columns
        self.reference_name = reference_name
        self.files = sorted({p["file"] for p in pairs})
        self.length_agree = [verdict_agreement(x, p["gpt4"]) for x, p in zip(columns["length"], pairs)]
        self.default_metric = REFERENCE_JUDGES[DEFAULT_REFERENCE_JUDGE].metric

    def line(self, name: str, scores: list[float], index: list[int], extra: dict) -> dict:
        """One judge's line: `scores` (signed, for output_2) on the pairs `index`."""
        pairs, columns, length_agree = self.pairs, self.columns, self.length_agree
        entry = {
            "judge": name,
            "reference_answers": self.reference_name,
            "covers_all_pairs": len(index) == len(pairs),
        }
        agree = [verdict_agreement(scores[k], pairs[i]["gpt4"]) for k, i in enumerate(index)]
        entry |= paired(agree, [length_agree[i] for i in index])
        picks = [
            float((scores[k] > 0) == (columns["length"][i] > 0))
            for k, i in enumerate(index)
            if scores[k] != 0 and columns["length"][i] != 0
        ]
        entry["judge_picks_longer"] = _mean(picks)
        if name not in (DEFAULT_REFERENCE_JUDGE, LENGTH_JUDGE):  # against the default, paired
            default = [verdict_agreement(columns[self.default_metric][i], pairs[i]["gpt4"]) for i in index]
            difference, difference_se = mean_se([a - b for a, b in zip(agree, default)])
            entry[f"{DEFAULT_REFERENCE_JUDGE}_same_pairs"] = round(statistics.fmean(default), 4)
            entry[f"difference_vs_{DEFAULT_REFERENCE_JUDGE}"] = round(difference, 4)
            entry[f"difference_vs_{DEFAULT_REFERENCE_JUDGE}_se"] = round(difference_se, 4)
        entry["by_file"] = {}
        for file in self.files:
            ks = [k for k, i in enumerate(index) if pairs[i]["file"] == file]
            if len(ks) > 1:
                entry["by_file"][file] = paired([agree[k] for k in ks], [length_agree[index[k]] for k in ks])
        return entry | extra


def validate_reference_judges(
    data: Path,
    reference_answers: Path,
    llm_cache: Path,
    judge_spec: str,
    max_output_tokens: int,
    seed: int,
) -> list[dict]:
    """One line per judge over all decided pairs of `data`: the length baseline, every REFERENCE_JUDGES
    recipe (cross-fitted), and the reference-guided LLM judge alone; the LLM ones over the pairs whose
    judgements (both orders) are in `llm_cache`, `judge_spec`'s judgement cache."""
    references = ReferenceAnswers.load(reference_answers)
    pairs = [p for p in load_pairs(data, None, seed) if p["output_1"].strip() != p["output_2"].strip()]
    missing = [p for p in pairs if p["instruction"] not in references]
    if missing:
        raise UserError(
            f"{reference_answers}: no reference answer for {len(missing)} dev pairs "
            f"(first: {missing[0]['instruction'][:60]!r})"
        )
    # features of output_2 over output_1 (the "ours" of the LLM runs), and their cost per pair
    columns: dict[str, list[float]] = {"length": [length_feature(p["output_2"], p["output_1"]) for p in pairs]}
    seconds = {}
    for metric in sorted({r.metric for r in REFERENCE_JUDGES.values() if r.metric}):
        similarity = similarity_function(metric)
        started = time.perf_counter()
        columns[metric] = [
            similarity(p["output_2"], references.get(p["instruction"]))
            - similarity(p["output_1"], references.get(p["instruction"]))
            for p in pairs
        ]
        seconds[metric] = (time.perf_counter() - started) / len(pairs)
    llm = [None] * len(pairs)
    llm_rows = {row["key"]: row for row in read_completed_rows(llm_cache) if "key" in row}
    if llm_rows:
        llm_judge = LocalJudge(judge_spec, max_output_tokens=max_output_tokens, reference_answers=references)
        llm = cached_llm_values(pairs, references, llm_judge, llm_rows)
    gpt4 = np.array([float(p["gpt4"] == 2) for p in pairs])
    by = np.array([p["file"] for p in pairs])
    validation = _Validation(pairs, columns, Path(reference_answers).name)

    results = []
    everything = list(range(len(pairs)))
    results.append(
        validation.line(LENGTH_JUDGE, columns["length"], everything, {"about": "the longer reply (in characters) wins"})
    )
    covered = [i for i in everything if llm[i] is not None and None not in llm[i]["values"]]
    if covered:
        columns["judge"] = [0.0] * len(pairs)
        for i in covered:
            columns["judge"][i] = llm_feature(*llm[i]["values"])
    for recipe in REFERENCE_JUDGES.values():
        names = [recipe.metric if k == "similarity" else k for k in recipe.weights]
        index = covered if recipe.needs_llm else everything
        if not index:
            continue
        x = np.column_stack([np.asarray(columns[n])[index] for n in names])
        y = gpt4[index]
        scores, without, weights = cross_fit(x, y, by[index], validation.files)
        probability = np.clip(0.5 * (1 + np.tanh(0.5 * scores)), 1e-6, 1 - 1e-6)
        log_loss = float(-np.mean(y * np.log(probability) + (1 - y) * np.log(1 - probability)))
        cost = sum(seconds.get(n, 0.0) for n in names) + (
            statistics.fmean(llm[i]["seconds"] for i in index) if recipe.needs_llm else 0.0
        )
        results.append(
            validation.line(
                recipe.name,
                scores.tolist(),
                index,
                {
                    "about": recipe.about,
                    "out_of_sample": "fit on one dev set, tested on the other, both ways",
                    "weights_all_pairs": dict(zip(recipe.weights, np.round(weights, 4).tolist())),
                    "weights_cross_fit": {
                        f"fit_without_{held_out}": dict(zip(recipe.weights, np.round(w, 4).tolist()))
                        for held_out, w in without.items()
                    },
                    "log_loss_out_of_sample": round(log_loss, 4),
                    "seconds_per_pair": round(cost, 4),
                },
            )
        )
    if covered:
        averaged = [statistics.fmean([llm[i]["values"][0], 1 - llm[i]["values"][1]]) - 0.5 for i in covered]
        results.append(
            validation.line(
                f"{judge_spec} ({REFERENCE_FORM})",
                averaged,
                covered,
                {
                    "about": "the 1.5B judge asked MT-bench's reference prompt, both orders averaged"
                    + (
                        ""
                        if len(covered) == len(pairs)
                        else f" ({len(covered)} of {len(pairs)} pairs judged: a fixed random subset, seed {seed})"
                    ),
                    "agreement_position_free": round(
                        statistics.fmean(verdict_agreement(columns["judge"][i], pairs[i]["gpt4"]) for i in covered),
                        4,
                    ),
                    "first_position_preference": round(
                        statistics.fmean(v for i in covered for v in (llm[i]["values"][0], llm[i]["values"][1])), 4
                    ),
                    "seconds_per_pair": round(statistics.fmean(llm[i]["seconds"] for i in covered), 2),
                },
            )
        )
        if len(covered) < len(pairs):
            results[-1]["subset_note"] = f"on these {len(covered)} pairs only, not all {len(pairs)}"
    return results
