"""The reports, rendered:

- `ijt-local compare`'s report.html (render_report): one static page (no server, no external files) with
  the metrics table, matplotlib plots embedded as PNG data URIs, and every instruction with all models'
  outputs side by side. Every piece of model or dataset text goes through html.escape.

The replication's results.md is ijt_local/replicate/markdown.py.
"""

from __future__ import annotations

import base64
import io
from html import escape

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
