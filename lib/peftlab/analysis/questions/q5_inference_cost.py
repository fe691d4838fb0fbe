"""Q5: which configurations minimise inference cost.

The fastest set of every task, intersected with the lowest serving memory.
"""

from __future__ import annotations

import math

import pandas as pd

from peftlab.analysis.comparisons import Analysis, memory_equal
from peftlab.analysis.questions.common import best_members, status_of, task_label
from peftlab.analysis.questions.entry import Finding, Question


def decide(an: Analysis) -> Finding:
    cfg = an.cfg
    if cfg.empty:
        return Finding("No evaluation.", "not answerable", None)
    comps, fastest = [], {}
    for task, group in cfg.groupby("task", sort=False):
        top = an.top(group, "latency_mean_s", False)
        if top is None:
            continue
        fastest[task] = top["config"]
        comps += [
            an.compare(top["config"], other, task, "latency_s")
            for other in group[group["config"] != top["config"]]["config"]
        ]
    if not fastest:
        return Finding("No latency was measured.", "not answerable", None)
    adjusted = an.adjust(comps, "Q5")
    sets = {}
    for task, top in fastest.items():
        group = cfg[cfg["task"] == task]
        sets[task] = set(best_members(top, group, adjusted, task))
    serving = cfg.groupby("config")["eval_res_gb"].max()
    least = serving.min() if serving.notna().any() else math.nan
    low_memory = {c for c, v in serving.items() if memory_equal(v, least)} if pd.notna(least) else None
    cheapest = set.intersection(*sets.values())
    if low_memory is not None:
        cheapest &= low_memory
    smallest = cfg["base_size"].min()
    meta = cfg.drop_duplicates("config").set_index("config")
    target = {c for c in meta.index if meta.loc[c, "method_key"] == "full" and meta.loc[c, "base_size"] == smallest}
    texts = [
        f"{task_label(t)}: fastest {fastest[t]}"
        + (f", not beaten by it: {', '.join(sorted(s - {fastest[t]}))}" if len(s) > 1 else " (decisively)")
        for t, s in sets.items()
    ]
    memory_text = (
        f"lowest serving memory ({least:.3g} GB, within 5 %): {', '.join(sorted(low_memory))}"
        if low_memory is not None
        else "serving memory not measured"
    )
    head = (
        f"Cheapest on every task and in memory: {', '.join(sorted(cheapest))}"
        if cheapest
        else "No configuration is both the fastest on every task and the lightest"
    )
    answer = f"{head}. {'; '.join(texts)}; {memory_text}."
    status = status_of(adjusted)
    if status == "decisive" and (len(cheapest) != 1):
        status = "tie"
    agrees = None if status == "insufficient data" else bool(cheapest & target) if cheapest else False
    figures = cfg.pivot_table(index="config", columns="task", values="latency_mean_s", aggfunc="first")
    figures.columns = [f"{c}_latency_s" for c in figures.columns]
    figures["serving_gb"] = serving
    figures["cheapest"] = [c in cheapest for c in figures.index]
    return Finding(answer, status, agrees, adjusted, figures.reset_index())


QUESTION = Question(
    id="Q5",
    text="Which configurations minimise inference cost?",
    reference="full FT on the small base",
    how=(
        "Per task, the fastest configuration (mean batch-1 latency) against every other; the fastest set "
        "is it and those it does not beat decisively. Lowest serving memory (batch-1 peak) within 5 %. The "
        "cheapest configurations are in the fastest set of every task and in the lowest-memory set."
    ),
    answer=decide,
    section="latency-table",
)
