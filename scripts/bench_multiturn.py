"""Multi-turn behaviour of several models / rule configs on a two-turn dev set: how often the second reply
copies the first (turn2_copy_rate), per kind of second turn (unrelated question, real follow-up).

    flock /tmp/ijt-cpu.lock python scripts/bench_multiturn.py --out /tmp/mt \
        --variant before=default+poe --config before=scripts/rules_multiturn_before.toml \
        --variant after=default+poe --variant instruct=smollm2-135m-instruct

Beside the copy rate, `turn1_word_rate` is a rough topic-bleed check for the unrelated rows: the share of
second replies that use a word of four or more letters from the first question that the second question
does not have (a few filler words aside). A copy penalty alone stops verbatim copies, but a reply can
still carry on the first topic.

Generations are cached per variant in OUT/generations/NAME.jsonl (resumable: rerun, or use --limit to
work in chunks). Replies stop at EOS or a role tag, as in `chat`. Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_harness import ROOT

from ijt_local.errors import UserError
from ijt_local.eval.generations import generate_cached
from ijt_local.eval.metrics import behaviour_metrics, copy_overlap, words
from ijt_local.eval.prompt_sets import load_prompts
from ijt_local.rules import expert as rules_module
from ijt_local.runtime.specs import RunOptions, parse_spec

DEV_SET = ROOT / "tests" / "fixtures" / "two_turn_dev.jsonl"
FILLER = set(
    "what which that this with from have your about into then there their them they these those give "
    "write make list please short using word words following sentence".split()
)


def topic_words(text: str) -> set[str]:
    return {w for w in words(text) if len(w) >= 4 and w not in FILLER}


def uses_first_topic(row: dict) -> bool:
    first_only = topic_words(row["turns"][0]) - topic_words(row["turns"][1])
    return bool(first_only & topic_words(row["outputs"][1]))


def pinned_config(out: Path, name: str, spec, config: str | None) -> str | None:
    """A +poe variant's rules config (the packaged defaults when none is given) is copied beside its cache;
    a cache made with another config is refused."""
    if not spec.poe:
        return None
    source = Path(config) if config is not None else Path(rules_module.__file__).with_name("default.toml")
    text = source.read_text(encoding="utf-8")
    pinned = out / "generations" / f"{name}.rules.toml"
    if pinned.exists() and pinned.read_text(encoding="utf-8") != text:
        raise UserError(f"{pinned}: variant {name} was generated with another rules config; use another --out")
    pinned.parent.mkdir(parents=True, exist_ok=True)
    pinned.write_text(text, encoding="utf-8")
    return config


def summary(rows: list[dict]) -> dict:
    metrics = behaviour_metrics(rows)
    overlaps = [copy_overlap(r["outputs"][0], r["outputs"][1]) for r in rows]
    return {
        "rows": len(rows),
        "turn1_word_rate": round(sum(map(uses_first_topic, rows)) / len(rows), 3),
        "turn2_copy_rate": round(metrics.get("turn2_copy_rate", 0.0), 3),
        "mean_copy_overlap": round(sum(overlaps) / len(overlaps), 3),
        "turn2_stop_rate": round(metrics["stop_rate"], 3),
        "turn2_echo_rate": round(metrics["echo_rate"], 3),
        "turn2_repetition_rate": round(metrics["repetition_rate"], 3),
        "turn2_mean_tokens": round(metrics["mean_tokens"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", default=str(DEV_SET))
    parser.add_argument("--out", required=True)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=SPEC")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME=RULES.toml",
        help="rules config for a +poe variant (default: the packaged rules/default.toml)",
    )
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows (work in chunks)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    out = Path(args.out)
    prompts = load_prompts(args.prompts, limit=args.limit)
    kinds = {p.id: (p.row or {}).get("kind", "all") for p in prompts}
    configs = dict(c.split("=", 1) for c in args.config)
    results = {}
    for variant in args.variant:
        name, _, text = variant.partition("=")
        spec = parse_spec(text)
        config = pinned_config(out, name, spec, configs.get(name))
        rows = generate_cached(
            spec,
            prompts,
            out / "generations" / f"{name}.jsonl",
            max_tokens=args.max_tokens,
            stop_at_role_tags=True,
            label=name,
            options=RunOptions(threads=args.threads, rules_config=config),
        )
        by_kind = {"all": summary(rows)}
        for kind in sorted(set(kinds.values()) - {"all"}):
            by_kind[kind] = summary([r for r in rows if kinds[r["id"]] == kind])
        results[name] = {"spec": text, "rules_config": configs.get(name), **by_kind}
    print(
        json.dumps({"prompts": args.prompts, "rows": len(prompts), "max_tokens": args.max_tokens, "variants": results})
    )


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:
        sys.exit(f"error: {exc}")
