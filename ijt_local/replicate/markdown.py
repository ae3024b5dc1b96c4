"""The replication's OUT/results.md (render_replication): a row per model, spread over seeds, the paper's
numbers beside, rendered from the results.json that report.py builds; and its parts (win rates, the
reference-guided judge, what the judge follows, single-task style)."""

from __future__ import annotations

import statistics

from ..measured import ifeval_prompts_as_replies, percent
from .lineup import table_row

COLUMNS = [
    ("stop_rate", "stop rate", True),
    ("echo_rate", "echo rate", True),
    ("role_leak_rate", "role-tag leak", True),
    ("repetition_rate", "repetition", True),
    ("mean_tokens", "mean tokens", False),
    ("ifeval_loose_prompt", "IFEval loose (prompt)", True),
    ("ifeval_loose_no_echo", "IFEval, echoes failing", True),
    ("ranking_accuracy", "ranking acc.", True),
    ("winrate", "win rate vs instruct", True),
    ("winrate_lc", "LC win rate vs instruct", True),
]


def render_replication(result: dict) -> str:
    """results.md of a replication, from its results.json."""
    table = result["table"]
    present = [c for c in COLUMNS if any(c[0] in cells for cells in table.values())]
    lines = [
        f"# Replication: base `{result['base']}`, budget `{result['budget']}`, seeds "
        f"{', '.join(map(str, result['seeds']))}",
        "",
        f"Command: `{result['command']}`  ",
        f"Time: {result['stage_seconds'] / 60:.1f} min, summed over the stages (across resumed invocations)  ",
        f"Tuned models run as {result['adapter_route']}.",
        *rule_sets_markdown(result.get("rule_sets")),
        "",
        "Training sets: the first rows whose whole conversation fits in the context, so every example ends with EOS:",
        "",
        *[
            f"- {name}: {d['kept']} rows of ≤ {d['max_seq_len']} tokens, found in the first {d['read']} source "
            f"rows; {d['tokens']:,} tokens; {d['truncated']} truncated"
            for name, d in result["training_data"].items()
        ],
        "",
        "| model | " + " | ".join(title for _, title, _ in present) + " | paper win rate vs instruct (Llama-2-7B) |",
        "| --- " * (len(present) + 2) + "|",
    ]
    for group, cells in table.items():
        row = [group]
        for key, _, is_rate in present:
            cell = cells.get(key)
            if cell is None:
                row.append("–")
                continue
            scale, unit = (100, "%") if is_rate else (1, "")
            text = f"{cell['mean'] * scale:.1f}{unit}"
            if cell["n"] > 1:
                text += f" ± {cell['std'] * scale:.1f}"
            row.append(text)
        paper = cells.get("paper_win_rate_vs_instruct")
        row.append(f"{paper} %" if paper is not None else "")
        lines.append("| " + " | ".join(row) + " |")
    judge = result.get("judge")
    if judge:
        agreement = judge["agreement_with_gpt4"]
        lines += [
            "",
            f"Win rates: judged by {judge['model']}, both orders averaged, each model against the "
            "instruction-tuned model of its seed (base and the rules, which have no seed, against each of "
            f"{', '.join(f'`{r}`' for r in judge['references'])}); LC = length-controlled (AlpacaEval 2's "
            "logistic model read at equal length).",
        ]
        if agreement:
            lines.append(
                f"This judge agrees with GPT-4 on {agreement['agreement']:.1%} ± "
                f"{agreement['agreement_se']:.1%} of {agreement['pairs']} AlpacaEval pairs, against "
                f"{agreement['length_baseline']:.1%} for 'the longer output wins' on the same pairs."
            )
        if judge.get("note"):
            lines.append(f"Note: {judge['note']}.")
        lines += winrate_markdown(table)
        lines += follows_markdown(judge.get("follows"))
    lines += reference_judge_markdown(result.get("reference_judge"))
    lines += style_markdown(result["style"])
    lines += [
        "",
        "Rates are over held-out instructions (the paper's 56 val instructions for the behaviour "
        f"metrics, IFEval prompts, held-out LIMA pairs for ranking, {result['alpaca_sample']['prompts']} "
        "AlpacaEval instructions drawn with seed "
        f"{result['alpaca_sample']['seed']} for win rates); ± is the standard deviation over seeds. "
        "'IFEval, echoes failing' counts a reply that restates the prompt as a failure: the IFEval prompts "
        f"themselves, scored as replies, pass {percent(ifeval_prompts_as_replies())} loose, so a model that "
        "echoes gets IFEval credit for quoting the instructions.",
        "",
    ]
    return "\n".join(lines)


def rule_sets_markdown(rule_sets: dict | None) -> list[str]:
    """Which rules each rule row ran: the paper's headline run is eos,uniform,diversity (no `start`)."""
    if not rule_sets:
        return []
    listed = "; ".join(f"{name} `{rules}`" for name, rules in rule_sets.items())
    return ["", f"Rule rows, the base multiplied with these rules: {listed}."]


def winrate_markdown(table: dict) -> list[str]:
    """Win rates with both kinds of spread: over instructions (s.e., mean over seeds) and over seeds (sd),
    and how often the judge's two orders named the same winner."""
    judged = {group: cells for group, cells in table.items() if "winrate" in cells}
    if not judged:
        return []

    def percent(cells: dict, key: str) -> str:
        cell = cells.get(key)
        return "–" if cell is None else f"{cell['mean'] * 100:.1f}"

    def spread(cells: dict, key: str) -> str:
        cell = cells.get(key)
        return "–" if cell is None or cell["n"] < 2 else f"{cell['std'] * 100:.1f}"

    lines = [
        "",
        "| model | seeds | win rate % | s.e. (instructions) | sd (seeds) | LC win rate % | LC s.e. | "
        "LC sd (seeds) | position-free win rate % | its s.e. | its sd (seeds) | order-consistent verdicts % |",
        "| --- " * 12 + "|",
    ]
    for group, cells in judged.items():
        lines.append(
            f"| {group} | {cells['winrate']['n']} | {percent(cells, 'winrate')} | "
            f"{percent(cells, 'winrate_se')} | {spread(cells, 'winrate')} | {percent(cells, 'winrate_lc')} | "
            f"{percent(cells, 'winrate_lc_se')} | {spread(cells, 'winrate_lc')} | "
            f"{percent(cells, 'winrate_position_free')} | {percent(cells, 'winrate_position_free_se')} | "
            f"{spread(cells, 'winrate_position_free')} | {percent(cells, 'winrate_order_consistent')} |"
        )
    lines += [
        "",
        "Order-consistent verdicts: the share of instructions on which the judge names the same winner "
        "in both orders. Near 0, each order mostly picks a position and a win rate near 50 % says only "
        "how far the judge's probabilities moved, not that it found the replies equal. Position-free: "
        "each instruction's two judgements read as quality difference ± a position bias in log-odds, "
        "the bias taken out (ijt_local/eval/winrate_stats.py); same side of 50 % as the win rate, "
        "not shrunk toward it.",
    ]
    return lines


def reference_judge_markdown(judge: dict | None) -> list[str]:
    """The same pairs judged again by a reference-guided judge (the winrate-reference stage): its win rates
    beside the paper's, and what it follows."""
    if not judge:
        return []
    table = judge["table"]

    def cell(cells: dict, key: str, spread: bool = True) -> str:
        value = cells.get(key)
        if value is None:
            return "–"
        text = f"{value['mean'] * 100:.1f}"
        return text + (f" ± {value['std'] * 100:.1f}" if spread and value["n"] > 1 else "")

    agreement = judge["agreement_with_gpt4"]
    lines = [
        "",
        f"## Win rates judged again: {judge['model']}",
        "",
        f"The same pairs judged by {judge['model']}: of the two replies, the one closer to GPT-4's answer "
        f"(`{judge['reference_answers']}` under the data root) wins, with probability sigmoid(w × similarity "
        "difference); swapping the replies swaps the verdict, so it has no position bias "
        "(ijt_local/eval/reference_judges.py).",
    ]
    if agreement:
        lines.append(
            f"This judge agrees with GPT-4 on {agreement['agreement']:.1%} ± {agreement['agreement_se']:.1%} "
            f"of {agreement['pairs']:,} AlpacaEval dev pairs, against {agreement['length_baseline']:.1%} "
            "for 'the longer output wins' on the same pairs."
        )
    lines += [
        "",
        "| model | seeds | win rate % vs instruct | s.e. (instructions) | LC win rate % | "
        "closer to GPT-4's answer % | paper win rate vs instruct (Llama-2-7B) |",
        "| --- " * 7 + "|",
    ]
    for group, cells in table.items():
        paper = cells.get("paper_win_rate_vs_instruct")
        lines.append(
            f"| {group} | {cells['winrate']['n']} | {cell(cells, 'winrate')} | "
            f"{cell(cells, 'winrate_se', spread=False)} | {cell(cells, 'winrate_lc')} | "
            f"{cell(cells, 'winrate_verdicts')} | " + (f"{paper} % |" if paper is not None else " |")
        )
    lines += [
        "",
        "± is the standard deviation over the references (seeds); s.e. is over instructions, averaged "
        "over the references. The win rate is the mean of the judge's probabilities, which stay near 50 % "
        "because two replies' similarities to the same answer differ little; 'closer to GPT-4's answer' counts "
        "verdicts instead: the share of instructions on which the reply is the closer one (ties half).",
    ]
    return lines + follows_markdown(judge.get("follows"))


def follows_markdown(follows: dict | None) -> list[str]:
    from ..eval.judge_signals import EQUAL_REPETITION

    if not follows or not follows["pairs"]:
        return []

    def r(signal: str) -> str:
        return "–" if follows[signal] is None else f"{follows[signal]:+.2f}"

    def rate(cell: dict | None) -> str:
        value = (cell or {}).get("position_free_win_rate")
        if value is None:
            return "–"
        spread = f" ± {cell['standard_error'] * 100:.1f}" if cell.get("standard_error") is not None else ""
        return f"{value * 100:.1f}{spread} ({cell['pairs']})"

    lines = [
        "",
        f"What the judge's preferences follow, over all {follows['pairs']} judged (reply, reference) "
        f"pairs: correlation of the position-free preference with the reply's repetition minus the "
        f"reference's {r('repetition')}, with its echo minus the reference's (each 0 or 1) "
        f"{r('echo')}, with log length ratio {r('length')} (ijt_local/eval/judge_signals.py). A judge that "
        "reads answers punishes echoes: per row, the position-free win rate % (pairs) of replies that "
        "restate the instruction and of the others, against references that do not; and over the pairs "
        f"whose reply and reference repeat about equally (repetition within {EQUAL_REPETITION} of each "
        "other), where repetition cannot decide (± its s.e.):",
        "",
        "| model | echoing replies | other replies | at equal repetition |",
        "| --- | --- | --- | --- |",
    ]
    equal = follows.get("equal_repetition", {})
    for group, split in follows.get("echo_split", {}).items():
        lines.append(f"| {group} | {rate(split['echo'])} | {rate(split['no_echo'])} | {rate(equal.get(group))} |")
    return lines


def style_markdown(style: dict) -> list[str]:
    """Single-task style adherence: poem and `####` shares by instruction domain for base and the
    single-task models, averaged over seeds (ijt_local/eval/style.py)."""
    groups: dict[str, list[dict]] = {}
    for name, rates in style.items():
        groups.setdefault(table_row(name), []).append(rates)
    domains = [d for d in ("poetry", "math", "creative", "other") if any(d in r for rs in groups.values() for r in rs)]
    if not domains:
        return []
    counts = {d: max(r.get(d, {}).get("n", 0) for rs in groups.values() for r in rs) for d in domains}

    def share(rates: list[dict], key: str) -> str:
        values = [r[key] for r in rates]
        text = f"{statistics.mean(values):.0%}"
        return text + f" ± {statistics.stdev(values) * 100:.0f}" if len(values) > 1 else text

    lines = [
        "",
        "Style adherence on AlpacaEval instructions by domain (decided from the instruction): share of "
        "replies that are poems / in verse form (short line-broken lines, repetition loops included) / "
        "that end with a GSM8K `#### number` line, mean ± sd over seeds:",
        "",
        "| model | " + " | ".join(f"{d} (n={counts[d]})" for d in domains) + " |",
        "| --- " * (len(domains) + 1) + "|",
    ]
    for group, per_seed in groups.items():
        cells = []
        for d in domains:
            seeds = [r[d] for r in per_seed if d in r]
            cells.append(
                " / ".join(share(seeds, key) for key in ("poem_rate", "verse_rate", "gsm8k_answer_rate"))
                if seeds
                else "–"
            )
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines
