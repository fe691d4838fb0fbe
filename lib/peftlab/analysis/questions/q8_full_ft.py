"""Q8: with ample memory, does full FT dominate.

Full FT against every adapter of its base and training task: quality, speed and serving
memory.
"""

from __future__ import annotations

import pandas as pd

from peftlab.analysis.comparisons import Analysis, memory_equal
from peftlab.analysis.questions.common import describe, status_of, task_label
from peftlab.analysis.questions.entry import Finding, Question
from peftlab.analysis.study_records import ADAPTERS


def decide(an: Analysis) -> Finding:
    dom = an.in_domain()
    comps, notes, memory_rows = [], [], []
    serving = an.cfg.groupby("config")["eval_res_gb"].max()
    for (train_task, base), group in dom.groupby(["train_task", "base"], sort=False):
        full = group[group["method_key"] == "full"]
        adapters = group[group["method_key"].isin(ADAPTERS)]
        if full.empty:
            if len(adapters):
                failed = an.failed_in(train_task=train_task, methods=("full",), base=base)
                notes.append(f"full FT on {task_label(train_task)} {'failed' if failed else 'was not run'}")
            continue
        f = full["config"].iloc[0]
        for other in adapters["config"]:
            comps += [an.compare(f, other, train_task), an.compare(f, other, train_task, "latency_s")]
            same = memory_equal(serving.get(f), serving.get(other))
            memory_rows.append(
                {
                    "full": f,
                    "adapter": other,
                    "full_gb": serving.get(f),
                    "adapter_gb": serving.get(other),
                    "full_more_memory": None if same is None else (not same and serving[f] > serving[other]),
                }
            )
    if not comps:
        return Finding(
            "No training task with both full FT and an adapter." + (f" ({'; '.join(notes)}.)" if notes else ""),
            "not answerable",
            None,
        )
    adjusted = an.adjust(comps, "Q8")
    quality = adjusted[adjusted["metric"] != "latency_s"]
    speed = adjusted[adjusted["metric"] == "latency_s"]
    q_wins, q_losses = int((quality["better"] == "a").sum()), int((quality["better"] == "b").sum())
    s_wins, s_losses = int((speed["better"] == "a").sum()), int((speed["better"] == "b").sum())
    memory = pd.DataFrame(memory_rows)
    heavier = int((memory["full_more_memory"] == True).sum()) if len(memory) else 0  # noqa: E712
    dominates = q_wins == len(quality) and s_losses == 0 and heavier == 0
    answer = (
        f"{'Yes' if dominates else 'No'}. Quality (in-domain efficacy): full FT better in {q_wins}, worse in "
        f"{q_losses}, tied in {len(quality) - q_wins - q_losses} of {len(quality)} comparisons. Speed and "
        f"serving: faster in {s_wins}, slower in {s_losses} of {len(speed)}; more serving memory than "
        f"{heavier} adapters (beyond 5 %)."
    )
    ties = quality[quality["verdict"] == "tie"]
    if len(ties):
        answer += " Ties: " + "; ".join(describe(c) for _, c in ties.iterrows()) + "."
    if notes:
        answer += f" ({'; '.join(notes)}.)"
    status = status_of(adjusted)
    if status == "decisive" and not quality["decisive"].all():
        status = "tie"
    agrees = True if dominates else (False if q_losses or s_losses or heavier else None)
    if status == "insufficient data":
        agrees = None
    return Finding(answer, status, agrees, adjusted, memory)


QUESTION = Question(
    id="Q8",
    text="With ample memory, does full FT dominate?",
    reference="yes",
    how=(
        "Per training task: full FT against every adapter of the same base. Quality: in-domain efficacy. "
        "Speed and serving: in-domain latency and serving memory. Full FT dominates when it wins every quality "
        "comparison and loses no speed or serving comparison."
    ),
    answer=decide,
    section="full-vs-adapters",
)
