"""Q1: which method has the best in-domain efficacy–efficiency balance.

The balance of a configuration mixes its efficacy share of the best with its efficiency share
(latency and training memory); the best set is the top balance and every configuration it does not
beat decisively.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from peftlab.analysis.comparisons import Analysis, memory_equal
from peftlab.analysis.questions.common import memory_column, status_of, task_label, won
from peftlab.analysis.questions.entry import Finding, Question
from peftlab.analysis.study_records import METHOD_LABELS


def decide(an: Analysis) -> Finding:
    dom = an.in_domain()
    if dom.empty:
        return Finding("No trained configuration was evaluated on its training task.", "not answerable", None)
    comps, parts, tops = [], [], {}
    memory = memory_column(dom)
    for train_task, group in dom.groupby("train_task", sort=False):
        g = group.copy()
        g["efficacy_share"] = _share(g["score"], True)
        g["latency_share"] = _share(g["latency_mean_s"], False)
        g["memory_share"] = _share(g[memory], False) if g[memory].notna().all() else math.nan
        g["balance"] = (g["efficacy_share"] + g[["latency_share", "memory_share"]].mean(axis=1)) / 2
        if g["balance"].notna().sum() == 0:
            continue
        top = g.loc[g["balance"].idxmax()]
        tops[train_task] = top
        for other in g[g["config"] != top["config"]]["config"]:
            comps += [
                an.compare(top["config"], other, train_task),
                an.compare(top["config"], other, train_task, "latency_s"),
            ]
        parts.append(g)
    if not tops:
        return Finding("No in-domain efficacy or latency was measured.", "insufficient data", None)
    adjusted = an.adjust(comps, "Q1")
    texts, sets = [], {}
    figures = pd.concat(parts)
    figures["best_set"] = False
    for train_task, top in tops.items():
        g = figures[figures["train_task"] == train_task]
        members = [top["config"]]
        for _, other in g[g["config"] != top["config"]].iterrows():
            hit = adjusted[(adjusted["b"] == other["config"]) & (adjusted["task"] == train_task)]
            top_wins = any(won(c, "a") for _, c in hit.iterrows())
            other_wins = any(won(c, "b") for _, c in hit.iterrows())
            mem = memory_equal(top[memory], other[memory])
            if mem is False:
                top_wins |= top[memory] < other[memory]
                other_wins |= other[memory] < top[memory]
            if not top_wins or other_wins:
                members.append(other["config"])
        figures.loc[(figures["train_task"] == train_task) & figures["config"].isin(members), "best_set"] = True
        methods = sorted({g.loc[g["config"] == m, "method_key"].iloc[0] for m in members})
        sets[train_task] = methods
        texts.append(
            f"trained on {task_label(train_task)}: top balance {top['config']} ({top['balance']:.2f}); "
            f"not beaten by it: {', '.join(members[1:]) or 'none'}"
        )
    single = all(len(m) == 1 for m in sets.values())
    methods = {m for ms in sets.values() for m in ms}
    if single and len(methods) == 1:
        head = f"{METHOD_LABELS.get(next(iter(methods)))} has the best balance"
    else:
        head = "No single method: " + "; ".join(
            f"{task_label(t)}: {', '.join(METHOD_LABELS.get(m, m) for m in ms)}" for t, ms in sets.items()
        )
    status = status_of(adjusted)
    if status == "decisive" and not single:
        status = "tie"
    agrees = (
        True
        if all(ms == ["full"] for ms in sets.values())
        else (False if any("full" not in ms for ms in sets.values()) else None)
    )
    answer = f"{head} ({'; '.join(texts)})."
    columns = ["train_task", "config", "method", "rank", "score", "latency_mean_s", memory, "balance", "best_set"]
    return Finding(answer, status, agrees, adjusted, figures[columns])


def _share(values: pd.Series, higher: bool) -> pd.Series:
    """Each value as a share of the best (1 = the best), for ratio-scale figures."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    if v.notna().sum() == 0:
        return v
    best = v.max() if higher else v.min()
    if best <= 0:
        return pd.Series(np.where(v == best, 1.0, 0.0), index=v.index)
    return v / best if higher else best / v


QUESTION = Question(
    id="Q1",
    text="Which method has the best in-domain efficacy–efficiency balance?",
    reference="full FT",
    how=(
        "In-domain (each trained configuration on its own training task). Balance = mean of the efficacy "
        "share of the best and the efficiency share (mean of the latency and training-memory shares). The "
        "top balance is compared with every other configuration of its training task on efficacy and latency; "
        "the best set is the top and every configuration it does not beat decisively on some measure without "
        "losing on another."
    ),
    answer=decide,
    section="balance-table",
)
