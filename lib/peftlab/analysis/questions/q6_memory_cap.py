"""Q6: under a training-memory cap, the best accuracy per GB.

Caps at the quantiles of the configurations' training peaks; per cap, the most effective
configuration that fits and those it does not beat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from peftlab.analysis.comparisons import Analysis
from peftlab.analysis.questions.common import best_members, best_set, memory_column, status_of, task_label
from peftlab.analysis.questions.entry import Finding, Question
from peftlab.analysis.study_records import METHOD_LABELS

CAP_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def decide(an: Analysis) -> Finding:
    dom = an.in_domain()
    if dom.empty:
        return Finding("No trained configuration was evaluated on its training task.", "not answerable", None)
    memory = memory_column(dom)
    if dom[memory].notna().sum() == 0:
        imported = len(an.records.trains) and an.records.trains["imported"].astype(bool).all()
        why = " (the reference study did not publish it)" if imported else ""
        return Finding(f"Training memory was not measured{why}, so no cap can be applied.", "not answerable", None)
    values = dom.drop_duplicates("config")[memory].dropna()
    caps = sorted({float(np.quantile(values, q)) for q in CAP_QUANTILES})
    comps, plan = [], []
    for train_task, group in dom.groupby("train_task", sort=False):
        for cap in caps:
            fit = group[group[memory] <= cap * (1 + 1e-9)]
            top = best_set(an, fit, train_task, comps, tiebreak=memory)
            if top is not None:
                plan.append((train_task, cap, fit, top["config"]))
    adjusted = an.adjust(comps, "Q6").drop_duplicates(subset=["a", "b", "task"])
    rows, sequences = [], {}
    for train_task, cap, fit, top in plan:
        members = best_members(top, fit, adjusted, train_task)
        methods = sorted({fit.loc[fit["config"] == m, "method_key"].iloc[0] for m in members})
        rows.append(
            {
                "train_task": train_task,
                "cap_gb": cap,
                "n_fit": len(fit),
                "top": top,
                "best_set": ", ".join(members),
                "methods": ", ".join(METHOD_LABELS.get(m, m) for m in methods),
            }
        )
        sequences.setdefault(train_task, []).append(methods)
    figures = pd.DataFrame(rows)
    texts = [
        f"{task_label(t)}: " + " → ".join("/".join(METHOD_LABELS.get(m, m) for m in ms) for ms in seq)
        for t, seq in sequences.items()
    ]
    label = "allocated" if memory == "train_all_gb" else "resident (RSS on a CPU)"
    answer = (
        f"Best in-domain efficacy from the hardest training-memory cap ({label}) to the loosest (caps "
        + ", ".join(f"{c:.3g}" for c in caps)
        + " GB): "
        + "; ".join(texts)
        + "."
    )
    hardest_vera = all(seq[0] == ["vera"] for seq in sequences.values())
    loosest_full = all("full" in seq[-1] for seq in sequences.values())
    status = status_of(adjusted) if len(adjusted) else "tie"
    agrees = (
        True
        if hardest_vera and loosest_full
        else (False if any("vera" not in seq[0] for seq in sequences.values()) else None)
    )
    return Finding(answer, status, agrees, adjusted, figures)


QUESTION = Question(
    id="Q6",
    text="Under a training-memory cap, best accuracy per GB?",
    reference="VeRA at the hardest cap, then LoRA/DoRA, then full FT",
    how=(
        "Training-memory caps at the observed quantiles (0, 25, 50, 75, 100 %) of the configurations' "
        "training peak (allocated on CUDA, RSS on a CPU). Per training task and cap: the best in-domain "
        "efficacy among the configurations that fit, and the ones it does not beat decisively."
    ),
    answer=decide,
    section="memory-caps",
)
