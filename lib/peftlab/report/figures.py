"""The report's figures: each a matplotlib figure embedded as a PNG inside a numbered
<figure> with its caption, sized to fit half a printed page.

The Pareto and transfer figures state their main facts in the caption (computed from the
configurations); the further figures (rank, latency, parse rates) have fixed captions.
Numbers come from ``next_number(key)``, the view's counter, so figures are numbered in the
order the report asks for them.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any

import pandas as pd

from peftlab.core.stats import pareto_front
from peftlab.report import plots
from peftlab.report.cells import TASK_ORDER, digits_of, number, task_name
from peftlab.report.plots import pareto_numbers, plot_pareto, plot_transfer, transfer_matrix

# Figure sizes in print: at most this wide and high (mm), so a figure never takes more than half a page.
PRINT_WIDTH_MM, PRINT_HEIGHT_MM = 270.0, 82.0


def figure_html(fig, *, number_: int, caption: str, anchor: str, extra: str = "") -> str:
    """A matplotlib figure as an embedded PNG inside <figure> with a numbered caption; in print
    it is scaled to fit PRINT_WIDTH_MM × PRINT_HEIGHT_MM."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    dpi = 150
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = buffer.getvalue()
    width_px, height_px = _png_size(data)
    width_mm, height_mm = width_px / dpi * 25.4, height_px / dpi * 25.4
    scale = min(1.0, PRINT_WIDTH_MM / width_mm, PRINT_HEIGHT_MM / height_mm)
    style = f"width:{width_mm * scale:.1f}mm"
    encoded = base64.b64encode(data).decode()
    return (
        f'<figure id="{anchor}" class="report-figure"><img src="data:image/png;base64,{encoded}" style="{style}" '
        f'alt="Figure {number_}">{extra}<figcaption><b>Figure {number_}.</b> {caption}</figcaption></figure>'
    )


def _png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def pareto_figure_html(
    configs: pd.DataFrame,
    *,
    label: Callable[[Any], str],
    next_number: Callable[[str], int],
    cost: str = "latency_mean_s",
    cost_label: str = "batch-1 latency per reply (s)",
    key: str = "pareto-latency",
) -> str:
    """Efficacy against a cost (latency or serving memory), one numbered point per configuration."""
    numbers = pareto_numbers(configs)
    fig = plot_pareto(configs, cost=cost, cost_label=cost_label, numbers=numbers)
    n = next_number(key)
    facts = []
    frame = configs.dropna(subset=["score", cost])
    for task in TASK_ORDER:
        g = frame[frame["task"] == task]
        if g.empty:
            continue
        front = g[pareto_front(g, {"score": True, cost: False})]
        best = g.loc[g["score"].idxmax()]
        cheap = g.loc[g[cost].idxmin()]
        facts.append(
            f"{task_name(task)}: {len(front)} of {len(g)} on the front, most effective "
            f"{label(best['config'])} ({number(best['score'], digits_of(best['score_metric']))}), "
            f"cheapest {label(cheap['config'])} ({number(cheap[cost], 3 if 'latency' in cost else 2)})"
        )
    what = "batch-1 latency" if cost == "latency_mean_s" else "serving memory"
    caption = (
        f"Efficacy against {what}, one numbered point per configuration (seeds averaged); up and to the left "
        "is better. Ringed points, joined by the dashed line, are non-dominated on these two axes. "
        + "; ".join(facts)
        + "."
    )
    key_html = (
        '<p class="figure-key">'
        + " · ".join(f"<b>{i}</b> {html.escape(label(c))}" for c, i in numbers.items())
        + "</p>"
    )
    return figure_html(fig, number_=n, caption=html.escape(caption), anchor=f"figure-{key}", extra=key_html)


def transfer_figure_html(
    configs: pd.DataFrame,
    *,
    labels: dict[str, str],
    label: Callable[[Any], str],
    metric_of: Callable[[str, str], str | None],
    next_number: Callable[[str], int],
) -> str:
    """Each trained configuration's efficacy change on each task against its untuned base."""
    fig = plot_transfer(configs, labels=labels)
    n = next_number("transfer")
    m = transfer_matrix(configs)
    off = m[m["task"] != m["train_task"]]
    facts = []
    if len(off):
        worst, best = off.loc[off["change"].idxmin()], off.loc[off["change"].idxmax()]
        for word, r in (("largest off-task loss", worst), ("largest off-task gain", best)):
            d = digits_of(metric_of(r["config"], r["task"]))
            facts.append(
                f"{word}: {label(r['config'])} on {task_name(r['task'])} "
                f"({number(r['change'], d, signed=True)}, untuned {number(r['base_score'], d)})"
            )
    undefined = m[m["relative"].isna()]
    caption = (
        "Efficacy change of each trained configuration (rows) on each evaluation task (columns) against the "
        "untuned model of the same base. Colour: relative change, comparable across tasks (blue better, red "
        "worse); text: the change in the task's own unit; outlined: the training task (in-domain). "
        + (("; ".join(facts) + ".")[:1].upper() + ("; ".join(facts) + ".")[1:] if facts else "")
        + (
            f" Grey cells: the untuned base scores 0, so no relative change ({len(undefined)} cells)."
            if len(undefined)
            else ""
        )
    )
    return figure_html(fig, number_=n, caption=html.escape(caption), anchor="figure-transfer")


# The further figures: what draws each from the evaluations (a "model" column of short labels), and its caption.
FURTHER_FIGURES = {
    "rank": (
        plots.plot_rank,
        "Efficacy against adapter rank (log scale), one line per method and training task; with several seeds "
        "the bars are their standard deviation. Flat lines: rank does not change efficacy.",
    ),
    "latency": (
        plots.plot_latency_split,
        "Batch-1 latency split into its two factors: generated tokens per reply (left) and seconds per token "
        "(right). A long bar on the left means the model writes long replies; on the right, a slower model.",
    ),
    "parse": (
        plots.plot_parse_rates,
        "Share of replies with an answer in \\boxed{}, per model and task. An unparsed reply scores as wrong.",
    ),
}


def further_figure_html(name: str, evals: pd.DataFrame, *, next_number: Callable[[str], int]) -> str:
    """One of ``FURTHER_FIGURES`` drawn from the evaluations."""
    if name not in FURTHER_FIGURES:
        raise ValueError(f"unknown figure {name!r}")
    plot, caption = FURTHER_FIGURES[name]
    fig = plot(evals)
    n = next_number(name)
    return figure_html(fig, number_=n, caption=html.escape(caption), anchor=f"figure-{name}")
