"""Q3: does rank change the efficacy–latency–memory trade-off.

Each rank of a method against the next lower one: efficacy and latency by comparison, memory
by point values.
"""

from __future__ import annotations

import pandas as pd

from peftlab.analysis.comparisons import MEASURES, Analysis, memory_equal
from peftlab.analysis.questions.common import amount, describe, memory_column, status_of
from peftlab.analysis.questions.entry import Finding, Question
from peftlab.analysis.study_records import ADAPTERS


def decide(an: Analysis) -> Finding:
    dom = an.in_domain()
    dom = dom[dom["method_key"].isin(ADAPTERS)]
    serving = an.cfg.groupby("config")["eval_res_gb"].max()
    memory = memory_column(dom) if len(dom) else "train_res_gb"
    comps, memory_rows = [], []
    for (_base, train_task, _method), group in dom.groupby(["base", "train_task", "method_key"], sort=False):
        group = group.sort_values("rank")
        for low, high in zip(group.iloc[:-1].itertuples(), group.iloc[1:].itertuples()):
            comps += [
                an.compare(high.config, low.config, train_task),
                an.compare(high.config, low.config, train_task, "latency_s"),
            ]
            for what, lo, hi in (
                ("serving memory", serving.get(low.config), serving.get(high.config)),
                ("training memory", getattr(low, memory), getattr(high, memory)),
            ):
                same = memory_equal(lo, hi)
                memory_rows.append(
                    {
                        "lower": low.config,
                        "higher": high.config,
                        "measure": what,
                        "low_gb": lo,
                        "high_gb": hi,
                        "changes": None if same is None else not same,
                    }
                )
    if not comps:
        return Finding("No method was trained at two or more ranks.", "not answerable", None)
    adjusted = an.adjust(comps, "Q3")
    memory_frame = pd.DataFrame(memory_rows)
    decisive = adjusted[adjusted["decisive"]]
    mem_changes = memory_frame[memory_frame["changes"] == True]  # noqa: E712 (None = not measured)
    if len(decisive):
        head = "Yes: " + "; ".join(describe(c) for _, c in decisive.iterrows())
    else:
        tested = adjusted[adjusted["verdict"] != "insufficient data"]
        widest = tested.groupby("metric")["mde"].max() if len(tested) else pd.Series(dtype=float)
        bounds = ", ".join(f"{MEASURES[m].label} above {amount(v, m)}" for m, v in widest.items())
        head = "Not materially: no rank change is decisive in efficacy or latency" + (
            f" (changes of {bounds} would have been detected with 80 % power)" if bounds else ""
        )
    if len(mem_changes):
        head += "; memory changes beyond 5 %: " + ", ".join(
            f"{r.measure} {r.lower} → {r.higher} ({r.low_gb:.3g} → {r.high_gb:.3g} GB)"
            for r in mem_changes.itertuples()
        )
    status = status_of(adjusted)
    agrees = None if status == "insufficient data" else decisive.empty
    return Finding(head + ".", status, agrees, adjusted, memory_frame)


QUESTION = Question(
    id="Q3",
    text="Does rank change the efficacy–latency–memory trade-off?",
    reference="not materially (≤ 1–2 %)",
    how=(
        "Per base, training task and method trained at several ranks: each rank against the next lower one, "
        "in-domain efficacy and latency (comparisons); serving and training memory (point values, equal "
        "within 5 %)."
    ),
    answer=decide,
    section="rank-pairs",
)
