"""Q9: which configurations are Pareto-optimal over efficacy, latency and memory.

Per task, the front over efficacy, latency and serving memory; a configuration off it is
'dominated' only when the comparison with its dominator is decisive.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from peftlab.analysis.comparisons import Analysis, memory_equal
from peftlab.analysis.questions.common import task_label, won
from peftlab.analysis.questions.entry import Finding, Question
from peftlab.analysis.study_records import ADAPTERS
from peftlab.core.stats import pareto_front


def decide(an: Analysis) -> Finding:
    cfg = an.cfg
    if cfg.empty:
        return Finding("No evaluation.", "not answerable", None)
    comps, parts = [], []
    for task, group in cfg.groupby("task", sort=False):
        g = group.dropna(subset=["score", "latency_mean_s"]).copy()
        if g.empty:
            continue
        objectives = {"score": True, "latency_mean_s": False}
        if g["eval_res_gb"].notna().all():
            objectives["eval_res_gb"] = False
        g["pareto"] = pareto_front(g, objectives)
        g["dominator"] = None
        for i, row in g[~g["pareto"]].iterrows():
            ge = np.all([(g[c] >= row[c]) if hib else (g[c] <= row[c]) for c, hib in objectives.items()], axis=0)
            gt = np.any([(g[c] > row[c]) if hib else (g[c] < row[c]) for c, hib in objectives.items()], axis=0)
            dominators = g[ge & gt]
            d = dominators.loc[dominators["score"].idxmax()]
            g.loc[i, "dominator"] = d["config"]
            comps += [
                an.compare(d["config"], row["config"], task),
                an.compare(d["config"], row["config"], task, "latency_s"),
            ]
        parts.append(g)
    if not parts:
        return Finding("No efficacy and latency measured together.", "insufficient data", None)
    adjusted = an.adjust(comps, "Q9")
    figures = pd.concat(parts)
    classes = []
    for _, row in figures.iterrows():
        if row["pareto"]:
            classes.append("non-dominated")
            continue
        hit = adjusted[
            (adjusted["a"] == row["dominator"]) & (adjusted["b"] == row["config"]) & (adjusted["task"] == row["task"])
        ]
        lighter = memory_equal(an.row(row["dominator"], row["task"])["eval_res_gb"], row["eval_res_gb"]) is False
        classes.append(
            "dominated" if any(won(c, "a") for _, c in hit.iterrows()) or lighter else "possibly non-dominated"
        )
    figures["front"] = classes
    on = figures[figures["front"] != "dominated"]
    untuned = figures[figures["method_key"] == "base"]
    largest = untuned["base_size"].max() if len(untuned) else math.nan
    smallest = figures["base_size"].min()
    roles = {
        "larger base": bool(
            untuned["base"].nunique() > 1 and (on["method_key"].eq("base") & on["base_size"].eq(largest)).any()
        ),
        "full FT on the small base": bool((on["method_key"].eq("full") & on["base_size"].eq(smallest)).any()),
        "SQuAD adapter": bool((on["method_key"].isin(ADAPTERS) & on["train_task"].eq("squad_v2")).any()),
    }
    texts = []
    for task, g in figures.groupby("task", sort=False):
        front = g[g["front"] == "non-dominated"]["config"].tolist()
        maybe = g[g["front"] == "possibly non-dominated"]["config"].tolist()
        texts.append(
            f"{task_label(task)}: {', '.join(front)}" + (f" (possibly also: {', '.join(maybe)})" if maybe else "")
        )
    present = [r for r, ok in roles.items() if ok]
    answer = (
        "Pareto fronts over efficacy, latency and serving memory — "
        + "; ".join(texts)
        + f". The study's roles on a front: {', '.join(present) if present else 'none'}."
    )
    if "eval_res_gb" not in figures.columns or figures["eval_res_gb"].isna().any():
        answer += " (Serving memory not measured for every configuration: fronts over efficacy and latency.)"
    status = "decisive" if (figures["front"] != "possibly non-dominated").all() else "tie"
    if not comps:
        status = "decisive"
    agrees = all(roles.values())
    columns = [
        "task",
        "config",
        "method",
        "base",
        "train_task",
        "score",
        "latency_mean_s",
        "eval_res_gb",
        "front",
        "dominator",
    ]
    return Finding(answer, status, agrees, adjusted, figures[columns])


QUESTION = Question(
    id="Q9",
    text="Which configurations are Pareto-optimal over efficacy, latency, memory?",
    reference="1.7B base (quality), 0.6B full FT (serve), a SQuAD adapter (latency)",
    how=(
        "Per task: the Pareto front over efficacy, latency and serving memory, on configurations (seeds "
        "averaged). A configuration off the front is 'dominated' when the most effective configuration that "
        "dominates it is decisively better on efficacy or latency (or uses more than 5 % less memory), "
        "otherwise 'possibly non-dominated'."
    ),
    answer=decide,
    section="pareto-figure",
)
