"""The reports, rendered:

- `ijt-local compare`'s report.html (render_report): one static page (no server, no external files) with
  the metrics table, matplotlib plots embedded as PNG data URIs, and every instruction with all models'
  outputs side by side. Every piece of model or dataset text goes through html.escape.
- `ijt-local replicate`'s results.md (render_replication): a row per model, spread over seeds, from the
  results.json that ijt_local/replicate/report.py builds.
"""

from __future__ import annotations

import base64
import io
import statistics
from html import escape

from ..measured import ifeval_prompts_as_replies, percent
from .metrics import DEFINITIONS, metric_names

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; }
table.metrics { border-collapse: collapse; } table.metrics td, table.metrics th {
  border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
table.metrics th:nth-child(-n+2), table.metrics td:nth-child(-n+2) { text-align: left; }
.plots img { max-width: 48%; margin-right: 1%; border: 1px solid #eee; }
.item { border-top: 2px solid #ddd; padding-top: 8px; margin-top: 16px; }
.instruction { background: #f4f6fa; padding: 8px; white-space: pre-wrap; font-weight: 600; }
.outputs { display: grid; gap: 8px; margin-top: 8px; }
.output { border: 1px solid #ddd; padding: 6px; min-width: 0; }
.output h3 { font-size: 13px; margin: 0 0 4px 0; }
.output pre { white-space: pre-wrap; word-break: break-word; font-size: 12px; margin: 0;
  max-height: 420px; overflow-y: auto; }
.badge { font-size: 11px; padding: 1px 5px; border-radius: 3px; margin-left: 4px; background: #eee; }
.stop { background: #d8f0d8; } .length { background: #f6dada; } .flag { background: #fbe8c8; }
dl.defs dt { font-weight: 600; } dl.defs dd { margin-bottom: 4px; }
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_images(
    names: list[str], metrics: dict[str, dict], token_counts: dict[str, list[int]]
) -> list[tuple[str, str]]:
    import matplotlib

    rate_names = [m for m in metric_names(metrics[names[0]]) if m.endswith("_rate")]
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = []
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        values = [metrics[name][rate] for rate in rate_names]
        bars = ax.bar([j + i * width for j in range(len(rate_names))], values, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(rate_names))])
    ax.set_xticklabels([r.replace("_rate", "") for r in rate_names])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of outputs")
    ax.set_title("Behaviour rates per model")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=max(len(names), 1), frameon=False)
    images.append(("Behaviour rates per model", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    top = max([max(c, default=0) for c in token_counts.values()] + [1])
    bins = [top * k / 20 for k in range(21)]
    ax.hist([token_counts[name] for name in names], bins=bins, label=names)  # bars side by side
    ax.set_xlabel("generated tokens")
    ax.set_ylabel("outputs")
    ax.set_title("Length distribution")
    ax.legend()
    images.append(("Length distribution", _png(fig)))
    plt.close(fig)
    return images


def _badges(row: dict) -> str:
    from .metrics import is_echo, is_role_leak, is_turn2_copy

    parts = [
        f'<span class="badge {escape(row["finish_reason"])}">{escape(row["finish_reason"])}</span>',
        f'<span class="badge">{int(row["n_tokens"])} tokens</span>',
    ]
    if is_role_leak(row):
        parts.append('<span class="badge flag">role leak</span>')
    if is_echo(row["instruction"], row["output"]):
        parts.append('<span class="badge flag">echo</span>')
    if len(row.get("outputs") or ()) >= 2 and is_turn2_copy(row):
        parts.append('<span class="badge flag">copies reply 1</span>')
    return "".join(parts)


def render_report(results: dict, generations: dict[str, list[dict]]) -> str:
    """The whole page as a string. `generations[name]` lists rows in prompt order for every model."""
    names = list(results["models"])
    metrics = {name: results["models"][name]["metrics"] for name in names}
    shown = metric_names(metrics[names[0]]) if names else []
    token_counts = {name: [row["n_tokens"] for row in generations[name]] for name in names}
    html = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>ijt-local compare</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>ijt-local compare</h1>",
        f"<p>{len(generations[names[0]]) if names else 0} instructions from "
        f"<code>{escape(str(results['prompts']['path']))}</code>; up to "
        f"{int(results['settings']['max_tokens'])} tokens, temperature "
        f"{escape(str(results['settings']['temperature']))}, seed {escape(str(results['settings']['seed']))}; "
        + (
            "a role tag or EOS ends a reply.</p>"
            if results["settings"].get("stop_at_role_tags")
            else "only EOS ends a reply (generation runs through role tags, as in the paper).</p>"
        ),
        "<h2>Metrics</h2>",
        '<table class="metrics"><tr><th>model</th><th>spec</th>',
    ]
    html += [f"<th>{escape(m)}</th>" for m in shown]
    extra = [key for key in ("winrate",) if any(key in results["models"][n] for n in names)]
    html += [f"<th>{escape(k)}</th>" for k in extra] + ["</tr>"]
    for name in names:
        html.append(f"<tr><td>{escape(name)}</td><td><code>{escape(results['models'][name]['spec'])}</code></td>")
        for m in shown:
            value = metrics[name][m]
            html.append(f"<td>{value:.1f}</td>" if m == "mean_tokens" else f"<td>{value:.3f}</td>")
        for key in extra:
            w = results["models"][name].get(key)
            cell = "–"
            if w and w.get("win_rate") is not None:
                se = w.get("standard_error")
                cell = f"{w['win_rate']:.3f}" + (f" ± {se:.3f}" if se is not None else "")
                cell += f" vs {w.get('reference', '?')}"
            html.append(f"<td>{escape(cell)}</td>")
        html.append("</tr>")
    html.append('</table><dl class="defs">')
    for m in shown:
        html.append(f"<dt>{escape(m)}</dt><dd>{escape(DEFINITIONS[m])}</dd>")
    html.append('</dl><h2>Plots</h2><div class="plots">')
    if names:
        for title, uri in plot_images(names, metrics, token_counts):
            html.append(f'<img alt="{escape(title)}" src="{uri}">')
    html.append("</div><h2>Outputs</h2>")
    columns = f"grid-template-columns: repeat({max(len(names), 1)}, minmax(0, 1fr));"
    for index, rows in enumerate(zip(*(generations[n] for n in names))):
        turns = rows[0].get("turns") or [rows[0]["instruction"]]
        html.append(
            f'<div class="item" id="p{index}"><div class="instruction">{index + 1}. '
            + "\n".join(f"[turn {k}] " * (len(turns) > 1) + escape(t) for k, t in enumerate(turns, 1))
            + "</div>"
        )
        html.append(f'<div class="outputs" style="{columns}">')
        for name, row in zip(names, rows):
            replies = row.get("outputs") or [row["output"]]
            text = "\n\n".join(f"[reply {k}] " * (len(replies) > 1) + r for k, r in enumerate(replies, 1))
            html.append(f'<div class="output"><h3>{escape(name)}{_badges(row)}</h3><pre>{escape(text)}</pre></div>')
        html.append("</div></div>")
    html.append("</body></html>")
    return "\n".join(html)


# ---- the replication's results.md --------------------------------------------------------------


def table_row(name: str) -> str:
    """The report row a model belongs to: its name without the seed ('poetry-s1' -> 'poetry')."""
    stem, _, seed = name.rpartition("-s")
    return stem if stem and seed.isdigit() else name


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
    from .judge_signals import EQUAL_REPETITION

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
