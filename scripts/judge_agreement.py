"""How often an in-process judge agrees with GPT-4, against "longer output wins" and chance on the same pairs.

    python scripts/judge_agreement.py --judge judge --form direct --pairs 200 [--max-seconds 420] [--speed]

Pairs come from ../shared/data/alpaca_eval/judge_dev/*.jsonl (GPT-4's AlpacaEval 1 preferences between
text-davinci-003 and another model; preference 0 or missing = no decision, skipped): pooled over the
files, shuffled with --seed, the first --pairs taken, so a larger --pairs extends the same sample. The
judge sees every pair in both orders and its order-averaged preference decides (exactly 0.5 counts as
half agreement, as does a pair whose judgements were all invalid). Judgements go to a cache, so a run cut
short by --max-seconds (chunks under the shared CPU lock) resumes where it stopped.

Reported (one JSON line at the end): agreement with GPT-4 and its standard error; the same for "the longer
output (in characters) wins" and the paired difference judge - length with its standard error; chance
(0.5) and the majority baseline (always the model GPT-4 prefers more often); agreement of each order
alone (position bias); how often the judge picks the longer output; seconds per judgement (one order,
one prefill) and per pair. --speed also times one judgement of a pair of two 384-token replies.

With --reference-answers the LLM judge is reference-guided (MT-bench's reference prompt by default).

    python scripts/judge_agreement.py --reference-judges [--llm-cache docs/judge-agreement-reference-cache.jsonl]

validates the reference-guided judges of ijt_local/eval/reference_judges.py on ALL decided dev pairs and
prints one JSON line per judge: "the longer output wins"; chrF and ROUGE-L to the reference answer; their
calibrated combination with length; and, on the pairs whose reference-guided LLM judgements are in
--llm-cache (judged in both orders by the command above), the LLM judge alone and the combination of
chrF, length and the LLM judge. A calibrated judge is fitted on one dev set and tested on the other, then
the other way round: its agreement is out of sample. Each line also gives the weights fitted on all pairs
(the ones REFERENCE_JUDGES carries), the paired difference against length with its standard error, and
the same per dev set.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

from ijt_local.data.home import shared_data_path
from ijt_local.errors import UserError
from ijt_local.eval.judge import ORDERS, JudgementCache
from ijt_local.eval.judge_prompts import DEFAULT_FORM, PROMPT_FORMS, REFERENCE_FORM
from ijt_local.eval.local_judge import DEFAULT_MAX_OUTPUT_TOKENS, LocalJudge
from ijt_local.eval.reference_answers import ReferenceAnswers
from ijt_local.jsonl import iter_jsonl

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = shared_data_path("alpaca_eval/judge_dev")
DEFAULT_REFERENCES = shared_data_path("alpaca_eval/references/gpt4.jsonl")
LENGTH_JUDGE = "longer output wins"  # the baseline row of --reference-judges


def load_pairs(data_dir: Path, n: int | None, seed: int) -> list[dict]:
    """The decided pairs of every file, shuffled with `seed`; the first `n` (None: all)."""
    files = sorted(data_dir.glob("*.jsonl"))
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
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, se


def _mean(values) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 4) if values else None


def agreement(preference_for_2: float | None, gpt4: int) -> float:
    if preference_for_2 is None or preference_for_2 == 0.5:
        return 0.5
    return float((preference_for_2 > 0.5) == (gpt4 == 2))


def time_384(judge: LocalJudge, pairs: list[dict]) -> dict:
    """Seconds for one order of a pair of two replies of exactly 384 judge tokens (not cached)."""
    judge._load()
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judge", default="judge", help="judge model spec (default: judge)")
    parser.add_argument(
        "--form",
        default=None,
        choices=list(PROMPT_FORMS),
        help=f"default: {DEFAULT_FORM}, or {REFERENCE_FORM} with --reference-answers",
    )
    parser.add_argument("--pairs", type=_pairs, default=200, help="how many pairs, or 'all' decided pairs")
    parser.add_argument(
        "--reference-answers",
        type=Path,
        default=None,
        help=f"reference-guided judging with these answers (e.g. {DEFAULT_REFERENCES})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of AlpacaEval annotation JSONL")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "judge-agreement" / "cache.jsonl")
    parser.add_argument("--max-output-tokens", type=int, default=DEFAULT_MAX_OUTPUT_TOKENS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None, help="stop judging new pairs after this long")
    parser.add_argument("--speed", action="store_true", help="also time a pair of two 384-token replies")
    parser.add_argument(
        "--reference-judges",
        action="store_true",
        help="validate the reference-guided judges on all decided pairs (one JSON line each)",
    )
    parser.add_argument(
        "--llm-cache",
        type=Path,
        default=ROOT / "docs" / "judge-agreement-reference-cache.jsonl",
        help="--reference-judges: the reference-guided LLM judge's judgement cache",
    )
    args = parser.parse_args()
    try:
        results = reference_judges(args) if args.reference_judges else [run(args)]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(json.dumps(result))
    return 0


def _pairs(text: str) -> int | None:
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'all'") from None


def run(args) -> dict:
    pairs = load_pairs(args.data, args.pairs, args.seed)
    references = None if args.reference_answers is None else ReferenceAnswers.load(args.reference_answers)
    judge = LocalJudge(
        args.judge,
        form=args.form,
        max_output_tokens=args.max_output_tokens,
        threads=args.threads,
        reference_answers=references,
    )
    args.form = judge.form.name
    started = time.perf_counter()
    rows = []
    try:
        with JudgementCache(judge, args.cache) as cache:
            for index, pair in enumerate(pairs):
                if args.max_seconds is not None and time.perf_counter() - started > args.max_seconds:
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
                print(f"{index + 1}/{len(pairs)}", file=sys.stderr, flush=True)
        speed = time_384(judge, pairs) if args.speed else {}
    finally:
        judge.close()
    return summarize(rows, args, len(pairs)) | speed


def summarize(rows: list[dict], args, requested: int) -> dict:
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
    agree, agree_se = mean_se(judge_agree)
    length, length_se = mean_se(length_agree)
    difference, difference_se = mean_se([a - b for a, b in zip(judge_agree, length_agree)])
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
        "judge": args.judge,
        "form": args.form,
        "max_output_tokens": args.max_output_tokens,
        "seed": args.seed,
        "pairs_requested": requested,
        "pairs": n,
        "complete": n == requested,
        "agreement": round(agree, 4),
        "agreement_se": round(agree_se, 4),
        "length_baseline": round(length, 4),
        "length_baseline_se": round(length_se, 4),
        "difference_vs_length": round(difference, 4),
        "difference_vs_length_se": round(difference_se, 4),
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


def _verdict_agreement(score: float, gpt4: int) -> float:
    """A signed score for output_2 (> 0: output_2 better) against GPT-4's pick; 0 counts half."""
    return 0.5 if score == 0 else float((score > 0) == (gpt4 == 2))


def _paired(values: list[float], baseline: list[float]) -> dict:
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


def reference_judges(args) -> list[dict]:
    """One result per judge over all decided pairs (the LLM ones over the pairs in --llm-cache)."""
    import numpy as np

    from ijt_local.eval.judge import judgement_key
    from ijt_local.eval.reference_judges import (
        DEFAULT_REFERENCE_JUDGE,
        REFERENCE_JUDGES,
        fit_symmetric_logistic,
        length_feature,
        llm_feature,
        similarity_function,
    )

    default_metric = REFERENCE_JUDGES[DEFAULT_REFERENCE_JUDGE].metric
    from ijt_local.jsonl import read_completed_rows

    reference_path = args.reference_answers or DEFAULT_REFERENCES
    references = ReferenceAnswers.load(reference_path)
    pairs = [p for p in load_pairs(args.data, None, args.seed) if p["output_1"].strip() != p["output_2"].strip()]
    missing = [p for p in pairs if p["instruction"] not in references]
    if missing:
        raise UserError(
            f"{reference_path}: no reference answer for {len(missing)} dev pairs "
            f"(first: {missing[0]['instruction'][:60]!r})"
        )
    files = sorted({p["file"] for p in pairs})
    # features of output_2 over output_1 (the "ours" of the LLM runs above), and their cost per pair
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
    llm_rows = {row["key"]: row for row in read_completed_rows(args.llm_cache) if "key" in row}
    llm_judge = None
    if llm_rows:
        llm_judge = LocalJudge(args.judge, max_output_tokens=args.max_output_tokens, reference_answers=references)
        for i, p in enumerate(pairs):
            reference = references.get(p["instruction"])
            ab = llm_rows.get(
                judgement_key(
                    llm_judge.cache_id, "output_first", p["instruction"], p["output_2"], p["output_1"], reference
                )
            )
            ba = llm_rows.get(
                judgement_key(
                    llm_judge.cache_id, "reference_first", p["instruction"], p["output_1"], p["output_2"], reference
                )
            )
            if ab is not None and ba is not None:
                values = [llm_judge.first_probability(ab), llm_judge.first_probability(ba)]
                llm[i] = {"values": values, "seconds": ab["seconds"] + ba["seconds"]}
    gpt4 = np.array([float(p["gpt4"] == 2) for p in pairs])
    by = np.array([p["file"] for p in pairs])
    length_agree = [_verdict_agreement(x, p["gpt4"]) for x, p in zip(columns["length"], pairs)]

    def report(name: str, scores: list[float], index: list[int], extra: dict) -> dict:
        entry = {
            "judge": name,
            "reference_answers": Path(reference_path).name,
            "covers_all_pairs": len(index) == len(pairs),
        }
        agree = [_verdict_agreement(scores[k], pairs[k]["gpt4"]) for k in range(len(index))]
        entry |= _paired(agree, [length_agree[i] for i in index])
        picks = [
            float((scores[k] > 0) == (columns["length"][i] > 0))
            for k, i in enumerate(index)
            if scores[k] != 0 and columns["length"][i] != 0
        ]
        entry["judge_picks_longer"] = _mean(picks)
        if name not in (DEFAULT_REFERENCE_JUDGE, LENGTH_JUDGE):  # against the default, paired
            default = [_verdict_agreement(columns[default_metric][i], pairs[i]["gpt4"]) for i in index]
            difference, difference_se = mean_se([a - b for a, b in zip(agree, default)])
            entry[f"{DEFAULT_REFERENCE_JUDGE}_same_pairs"] = round(statistics.fmean(default), 4)
            entry[f"difference_vs_{DEFAULT_REFERENCE_JUDGE}"] = round(difference, 4)
            entry[f"difference_vs_{DEFAULT_REFERENCE_JUDGE}_se"] = round(difference_se, 4)
        entry["by_file"] = {}
        for name_ in files:
            ks = [k for k, i in enumerate(index) if pairs[i]["file"] == name_]
            if len(ks) > 1:
                entry["by_file"][name_] = _paired([agree[k] for k in ks], [length_agree[index[k]] for k in ks])
        return entry | extra

    results = []
    everything = list(range(len(pairs)))
    results.append(
        report(LENGTH_JUDGE, columns["length"], everything, {"about": "the longer reply (in characters) wins"})
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
        y, groups = gpt4[index], by[index]
        scores = np.zeros(len(index))
        cross = {}
        for held_out in files:
            train, test = groups != held_out, groups == held_out
            if train.sum() < 2 or test.sum() < 1:
                continue
            w = fit_symmetric_logistic(x[train], y[train])
            scores[test] = x[test] @ w
            cross[f"fit_without_{held_out}"] = dict(zip(recipe.weights, np.round(w, 4).tolist()))
        weights = fit_symmetric_logistic(x, y)
        probability = np.clip(0.5 * (1 + np.tanh(0.5 * scores)), 1e-6, 1 - 1e-6)
        log_loss = float(-np.mean(y * np.log(probability) + (1 - y) * np.log(1 - probability)))
        cost = sum(seconds.get(n, 0.0) for n in names) + (
            statistics.fmean(llm[i]["seconds"] for i in index) if recipe.needs_llm else 0.0
        )
        results.append(
            report(
                recipe.name,
                scores.tolist(),
                index,
                {
                    "about": recipe.about,
                    "out_of_sample": "fit on one dev set, tested on the other, both ways",
                    "weights_all_pairs": dict(zip(recipe.weights, np.round(weights, 4).tolist())),
                    "weights_cross_fit": cross,
                    "log_loss_out_of_sample": round(log_loss, 4),
                    "seconds_per_pair": round(cost, 4),
                },
            )
        )
    if covered:
        averaged = [statistics.fmean([llm[i]["values"][0], 1 - llm[i]["values"][1]]) - 0.5 for i in covered]
        results.append(
            report(
                f"{args.judge} ({REFERENCE_FORM})",
                averaged,
                covered,
                {
                    "about": "the 1.5B judge asked MT-bench's reference prompt, both orders averaged"
                    + (
                        ""
                        if len(covered) == len(pairs)
                        else f" ({len(covered)} of {len(pairs)} pairs judged: a fixed random subset, seed {args.seed})"
                    ),
                    "agreement_position_free": round(
                        statistics.fmean(_verdict_agreement(columns["judge"][i], pairs[i]["gpt4"]) for i in covered), 4
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


if __name__ == "__main__":
    sys.exit(main())
