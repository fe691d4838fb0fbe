"""Q7: if memory forces adapters, is fine-tuning still worth it.

Every adapter on its training task against the untuned model of its base, on efficacy and
latency.
"""

from __future__ import annotations

import pandas as pd

from peftlab.analysis.comparisons import Analysis
from peftlab.analysis.questions.common import format_comparisons, status_of, task_label, won
from peftlab.analysis.questions.entry import Finding, Question
from peftlab.analysis.study_records import ADAPTERS


def decide(an: Analysis) -> Finding:
    comps, pairs, outcome = [], [], {}
    dom = an.in_domain()
    adapters = dom[dom["method_key"].isin(ADAPTERS)]
    for r in adapters.itertuples():
        base_cfg = an.untuned(r.base)
        if base_cfg is None or an.row(base_cfg, r.train_task) is None:
            continue
        comps += [
            an.compare(r.config, base_cfg, r.train_task),
            an.compare(r.config, base_cfg, r.train_task, "latency_s"),
        ]
        pairs.append((r.config, base_cfg, r.train_task))
    if not comps:
        return Finding(
            "No adapter configuration next to an untuned model of the same base on its training task.",
            "not answerable",
            None,
        )
    adjusted = an.adjust(comps, "Q7")
    # The answer format, a family of its own: an adapter that only learned to write the box is not "worth it".
    fmt = format_comparisons(an, pairs, "Q7 format")
    texts = []
    for task, group in adjusted.groupby("task", sort=False):
        worth = []
        for config, pair in group.groupby("a", sort=False):
            eff = pair[pair["metric"] != "latency_s"]
            lat = pair[pair["metric"] == "latency_s"]
            better = len(eff) and won(eff.iloc[0], "a")
            faster = len(lat) and won(lat.iloc[0], "a")
            worse = len(eff) and won(eff.iloc[0], "b")
            if better or (faster and not worse):
                worth.append(f"{config} ({'skill' if better else 'latency'})")
        outcome[task] = bool(worth)
        learned = (
            fmt[(fmt["task"] == task) & fmt["decisive"].astype(bool) & (fmt["better"] == "a")] if len(fmt) else fmt
        )
        texts.append(
            f"{task_label(task)}: "
            + (
                f"yes — {', '.join(worth)}"
                if worth
                else "no adapter is decisively better in the skill or faster than the untuned base"
            )
            + (
                f" (separately, {len(learned)} of {int((fmt['task'] == task).sum())} learned the answer format)"
                if len(fmt)
                else ""
            )
        )
    answer = "; ".join(texts) + "."
    status = status_of(adjusted)
    if status == "decisive" and not all(outcome.values()):
        undecided = adjusted[(adjusted["task"].isin([t for t, v in outcome.items() if not v])) & ~adjusted["decisive"]]
        status = "tie" if len(undecided) else status
    expected = {"openmath": True, "squad_v2": False}
    agrees = (
        None
        if status == "insufficient data" or not set(expected) <= set(outcome)
        else all(outcome[t] == v for t, v in expected.items())
    )
    both = pd.concat([adjusted, fmt], ignore_index=True) if len(fmt) else adjusted
    return Finding(answer, status, agrees, both)


QUESTION = Question(
    id="Q7",
    text="If memory forces adapters, is fine-tuning still worth it?",
    reference="for math/MCQ yes (latency), for extractive QA no",
    how=(
        "Per training task: every adapter configuration trained on it against the untuned model of the same "
        "base on that task (in-domain), on the skill (efficacy without the answer format) and latency, and as a "
        "separate family on the share of replies in the answer format. Worth it when an adapter is decisively "
        "better in the skill, or decisively faster without being decisively worse in it; a latency difference "
        "where either side's replies were cut at the token cap is never decisive."
    ),
    answer=decide,
    section="adapter-vs-untuned",
)
