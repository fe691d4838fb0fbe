"""The body of each question's report section, and the one mapping from a question's section
kind to the function that renders it.

A question entry (``peftlab.analysis.questions.entry.Question``) names its section kind, one of
``SECTION_KINDS``; analysis sits below report and cannot name a report function, so ``SECTIONS``
below is where each kind meets its renderer (a test checks that every kind has one).
``question_body`` looks the answer's entry up in the registry and renders its kind: a compact
table of the question's figures or comparisons, or a figure. A body is presentation: one that
cannot be built says so in a note and never fails the report.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any, Protocol

from peftlab.analysis.questions import question
from peftlab.report.cells import (
    DASH,
    MAX_ROWS,
    MEASURE_SHORT,
    Column,
    capped_table,
    comparison_pairs,
    digits_of,
    interval,
    number,
    side_word,
    task_name,
    verdict_word,
    yes_no,
)


class View(Protocol):
    """What a body needs from the report's view (``peftlab.report.view.ReportView``)."""

    def label(self, config: Any) -> str: ...

    def metric_of(self, config: str, task: str) -> str | None: ...

    def transfer_figure_html(self) -> str: ...

    def pareto_figure_html(self) -> str: ...


def balance_table(view: View, a: dict) -> str:
    """Q1: the configurations of each training task by balance, the best set marked."""
    f = a["figures"]
    if f.empty:
        return ""
    memory = next((c for c in ("train_all_gb", "train_res_gb") if c in f.columns), None)
    f = f.sort_values(["train_task", "balance"], ascending=[True, False], kind="stable")
    f = f.groupby("train_task", sort=False).head(max(3, MAX_ROWS // max(f["train_task"].nunique(), 1)))
    f = f.assign(measure=[MEASURE_SHORT.get(view.metric_of(c, t), "") for c, t in zip(f["config"], f["train_task"])])
    cols = [
        Column("train_task", "Trained on", task_name, True),
        Column("config", "Configuration", view.label, True),
        Column("score", "In-domain efficacy", lambda v: number(v, 1)),
        Column("measure", "Measure", None, True),
        Column("latency_mean_s", "Latency (s)", lambda v: number(v, 3)),
    ]
    if memory:
        cols.append(Column(memory, "Train memory (GB)", lambda v: number(v, 2)))
    cols += [Column("balance", "Balance", lambda v: number(v, 2)), Column("best_set", "Best set", yes_no, True)]
    return capped_table(f, cols, a["id"])


def adapter_comparisons(view: View, a: dict) -> str:
    """Q2: each comparison of the best adapter with full FT or the larger base."""
    c = a["comparisons"]
    if c.empty:
        return ""
    rows = c.assign(
        measure=c["metric"].map(lambda m: MEASURE_SHORT.get(m, m)),
        diff_text=[interval(r.diff, r.ci_low, r.ci_high, digits_of(r.metric)) for r in c.itertuples()],
        verdict_text=[side_word(r) for _, r in c.iterrows()],
    )
    cols = [
        Column("a", "Adapter", view.label, True),
        Column("b", "Against", view.label, True),
        Column("task", "Task", task_name, True),
        Column("measure", "Measure", None, True),
        Column("diff_text", "Adapter − other [interval]", None),
        Column("n", "n", lambda v: number(v, 0)),
        Column("verdict_text", "Adapter is", None, True),
    ]
    return capped_table(rows, cols, a["id"], "comparisons")


def rank_pairs(view: View, a: dict) -> str:
    """Q3: each pair of neighbouring ranks, efficacy and latency differences and serving memory."""
    c = a["comparisons"]
    if c.empty:
        return ""
    pairs = comparison_pairs(c)
    memory = a["figures"]
    if len(memory) and "measure" in memory:
        serving = memory[memory["measure"] == "serving memory"].set_index(["lower", "higher"])
        pairs["memory"] = [
            f"{number(serving.loc[(b, a_), 'low_gb'], 2)} → {number(serving.loc[(b, a_), 'high_gb'], 2)}"
            if (b, a_) in serving.index
            else DASH
            for a_, b in zip(pairs["a"], pairs["b"])
        ]
    cols = [
        Column("b", "Lower rank", view.label, True),
        Column("a", "Higher rank", view.label, True),
        Column("measure", "Measure", None, True),
        Column("eff", "Efficacy: higher − lower", None),
        Column("lat", "Latency (s): higher − lower", None),
        Column("memory", "Serving memory (GB)", None),
        Column("n", "n", lambda v: number(v, 0)),
    ]
    return capped_table(pairs, cols, a["id"], "rank pairs")


def transfer_figure(view: View, a: dict) -> str:
    """Q4: the transfer figure."""
    return view.transfer_figure_html()


def latency_table(view: View, a: dict) -> str:
    """Q5: each configuration's latency per task and serving memory, the cheapest first."""
    f = a["figures"]
    if f.empty:
        return ""
    latency = [c for c in f.columns if c.endswith("_latency_s")]
    f = f.assign(_mean=f[latency].mean(axis=1)).sort_values(["cheapest", "_mean"], ascending=[False, True])
    cols = [Column("config", "Configuration", view.label, True)]
    cols += [Column(c, f"{task_name(c[: -len('_latency_s')])} latency (s)", lambda v: number(v, 3)) for c in latency]
    cols += [
        Column("serving_gb", "Serving memory (GB)", lambda v: number(v, 2)),
        Column("cheapest", "Cheapest", yes_no, True),
    ]
    return capped_table(f, cols, a["id"], "configurations (fastest first)")


def memory_caps(view: View, a: dict) -> str:
    """Q6: per training task and memory cap, the most effective configuration and its best set."""
    f = a["figures"]
    if f.empty:
        return ""
    cols = [
        Column("train_task", "Trained on", task_name, True),
        Column("cap_gb", "Memory cap (GB)", lambda v: number(v, 2)),
        Column("n_fit", "Configurations under it", lambda v: number(v, 0)),
        Column("top", "Most effective", view.label, True),
        Column("methods", "Methods not beaten by it", None, True),
    ]
    return capped_table(f, cols, a["id"])


def adapter_vs_untuned(view: View, a: dict) -> str:
    """Q7: each adapter against the untuned base, on its training task."""
    c = a["comparisons"]
    if c.empty:
        return ""
    pairs = comparison_pairs(c)
    cols = [
        Column("a", "Adapter (trained and evaluated on)", view.label, True),
        Column("b", "Untuned", view.label, True),
        Column("measure", "Measure", None, True),
        Column("eff", "Skill: adapter − untuned", None),
        Column("lat", "Latency (s): adapter − untuned", None),
        *([Column("fmt", "In format (points): adapter − untuned", None)] if "fmt" in pairs else []),
        Column("n", "n", lambda v: number(v, 0)),
    ]
    return capped_table(pairs, cols, a["id"], "adapters")


def full_vs_adapters(view: View, a: dict) -> str:
    """Q8: full FT against each adapter: efficacy, latency and serving memory."""
    c = a["comparisons"]
    if c.empty:
        return ""
    pairs = comparison_pairs(c)
    memory = a["figures"]
    if len(memory) and "adapter" in memory:
        m = memory.set_index(["full", "adapter"])
        pairs["memory"] = [
            f"{number(m.loc[(x, y), 'full_gb'], 2)} / {number(m.loc[(x, y), 'adapter_gb'], 2)}"
            if (x, y) in m.index
            else DASH
            for x, y in zip(pairs["a"], pairs["b"])
        ]
    cols = [
        Column("b", "Adapter (trained and evaluated on)", view.label, True),
        Column("measure", "Measure", None, True),
        Column("eff", "Efficacy: full FT − adapter", None),
        Column("lat", "Latency (s): full FT − adapter", None),
        Column("memory", "Serving GB: full FT / adapter", None),
        Column("n", "n", lambda v: number(v, 0)),
    ]
    return capped_table(pairs, cols, a["id"], "adapters")


def pareto_figure(view: View, a: dict) -> str:
    """Q9: the Pareto figure over efficacy and latency."""
    return view.pareto_figure_html()


def comparisons_table(view: View, a: dict) -> str:
    """Every comparison behind the answer, one row each (a body that fits any question)."""
    c = a["comparisons"]
    if c.empty:
        return ""
    rows = c.assign(
        measure=c["metric"].map(lambda m: MEASURE_SHORT.get(m, m)),
        diff_text=[interval(r.diff, r.ci_low, r.ci_high, digits_of(r.metric)) for r in c.itertuples()],
        verdict_text=[verdict_word(r) for _, r in c.iterrows()],
    )
    cols = [
        Column("a", "A", view.label, True),
        Column("b", "B", view.label, True),
        Column("task", "Task", task_name, True),
        Column("measure", "Measure", None, True),
        Column("diff_text", "A − B [interval]", None),
        Column("n", "n", lambda v: number(v, 0)),
        Column("verdict_text", "Verdict", None, True),
    ]
    return capped_table(rows, cols, a["id"], "comparisons")


# The one place a section kind (``SECTION_KINDS``) meets the function that renders it.
SECTIONS: dict[str, Callable[[View, dict], str]] = {
    "balance-table": balance_table,
    "adapter-comparisons": adapter_comparisons,
    "rank-pairs": rank_pairs,
    "transfer-figure": transfer_figure,
    "latency-table": latency_table,
    "memory-caps": memory_caps,
    "adapter-vs-untuned": adapter_vs_untuned,
    "full-vs-adapters": full_vs_adapters,
    "pareto-figure": pareto_figure,
    "comparisons": comparisons_table,
}


def question_body(view: View, a: dict) -> str:
    """The body of answer ``a``'s section: its entry's section kind, rendered ('' for an answer
    without an entry)."""
    entry = question(a["id"])
    render = SECTIONS[entry.section] if entry is not None else None
    try:
        return render(view, a) if render else ""
    except (KeyError, ValueError, IndexError) as error:  # a table is presentation: never fail the report
        return f'<p class="table-note">No compact table ({html.escape(str(error))}).</p>'
