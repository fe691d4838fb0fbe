"""Q2: do adapters approach or beat full FT, and the larger base.

Per training task, the most effective adapter against full FT of its base and against the
largest untuned base.
"""

from __future__ import annotations

from peftlab.analysis.comparisons import Analysis
from peftlab.analysis.questions.common import describe, status_of, task_label, won
from peftlab.analysis.questions.entry import Finding, Question
from peftlab.analysis.study_records import ADAPTERS


def decide(an: Analysis) -> Finding:
    dom = an.in_domain()
    untuned = an.cfg[an.cfg["method_key"] == "base"]
    comps, notes = [], []
    for (train_task, base), group in dom.groupby(["train_task", "base"], sort=False):
        adapters = group[group["method_key"].isin(ADAPTERS)]
        best = an.top(adapters, "score", True, tiebreak="latency_mean_s")
        if best is None:
            continue
        full = group[group["method_key"] == "full"]
        if len(full):
            comps.append({**an.compare(best["config"], full["config"].iloc[0], train_task), "_half": "full FT"})
        else:
            failed = an.failed_in(train_task=train_task, methods=("full",), base=base)
            notes.append(f"full FT on {task_label(train_task)} {'failed' if failed else 'was not run'}")
        larger = untuned[untuned["base_size"] > best["base_size"]]
        if len(larger):
            big = larger.loc[larger["base_size"].idxmax(), "config"]
            for task in an.rows()["task"].unique():
                if an.row(big, task) is not None and an.row(best["config"], task) is not None:
                    comps.append({**an.compare(best["config"], big, task), "_half": "larger base"})
    if not comps:
        return Finding(
            "No adapter configuration next to a full FT run or a larger untuned base."
            + (f" ({'; '.join(notes)})" if notes else ""),
            "not answerable",
            None,
        )
    halves_of = [c.pop("_half") for c in comps]
    adjusted = an.adjust(comps, "Q2")
    adjusted["against"] = halves_of
    verdicts, texts = {}, []
    for half in ("full FT", "larger base"):
        hit = adjusted[adjusted["against"] == half]
        if hit.empty:
            verdicts[half] = "not run"
            continue
        if any(won(c, "a") for _, c in hit.iterrows()):
            verdicts[half] = "yes"
        elif all(won(c, "b") for _, c in hit.iterrows()):
            verdicts[half] = "no"
        else:
            verdicts[half] = "undecided"
        texts.append(f"vs {half}: " + "; ".join(describe(c) for _, c in hit.iterrows()))
    words = {
        "yes": "an adapter beats",
        "no": "every adapter falls short of",
        "undecided": "undecided against",
        "not run": "nothing to compare with for",
    }
    head = "; ".join(f"{words[v]} {h}" for h, v in verdicts.items())
    decided = [v for v in verdicts.values() if v != "not run"]
    if all(v == "no" for v in decided) and len(decided) == 2:
        agrees = True
    elif any(v == "yes" for v in decided):
        agrees = False
    else:
        agrees = None
    status = "decisive" if decided and all(v in ("yes", "no") for v in decided) else status_of(adjusted)
    if status == "decisive" and "undecided" in decided:
        status = "tie"
    answer = head[0].upper() + head[1:] + ". " + " | ".join(texts) + "." + (f" ({'; '.join(notes)}.)" if notes else "")
    return Finding(answer, status, agrees, adjusted)


QUESTION = Question(
    id="Q2",
    text="Do adapters approach or beat full FT, and the larger base?",
    reference="no, neither",
    how=(
        "Per training task, the adapter with the best in-domain efficacy against full FT of the same base on "
        "that task, and against the largest untuned base on every evaluation task."
    ),
    answer=decide,
    section="adapter-comparisons",
)
