"""Q4: which method transfers best and forgets least across tasks.

Every trained configuration off its training task against the untuned model of its base;
counted per method.
"""

from __future__ import annotations

from peftlab.analysis.comparisons import Analysis
from peftlab.analysis.questions.common import status_of
from peftlab.analysis.questions.entry import Finding, Question
from peftlab.analysis.study_records import ADAPTERS, METHOD_LABELS


def decide(an: Analysis) -> Finding:
    comps = []
    trained = an.cfg[an.cfg["trained"].astype(bool) & (an.cfg["task"] != an.cfg["train_task"])]
    for r in trained.itertuples():
        base_cfg = an.untuned(r.base)
        if base_cfg is not None and an.row(base_cfg, r.task) is not None:
            comps.append(an.compare(r.config, base_cfg, r.task))
    if not comps:
        return Finding(
            "No trained configuration evaluated off its training task next to an untuned model of the same base.",
            "not answerable",
            None,
        )
    adjusted = an.adjust(comps, "Q4")
    methods = an.cfg.drop_duplicates("config").set_index("config")["method_key"]
    adjusted["method_key"] = adjusted["a"].map(methods)
    summary = (
        adjusted.groupby("method_key", sort=False)
        .agg(
            comparisons=("a", "size"),
            gains=("better", lambda b: int((b == "a").sum())),
            losses=("better", lambda b: int((b == "b").sum())),
            insufficient=("verdict", lambda v: int((v == "insufficient data").sum())),
        )
        .reset_index()
    )
    summary["ties"] = summary["comparisons"] - summary["gains"] - summary["losses"] - summary["insufficient"]
    summary["changed_share"] = (summary["gains"] + summary["losses"]) / summary["comparisons"]
    summary.insert(0, "method", summary["method_key"].map(METHOD_LABELS))
    parts = [
        f"{r.method}: {r.gains} gains, {r.losses} losses, {r.ties} ties of {r.comparisons}"
        + (f" ({r.insufficient} insufficient data)" if r.insufficient else "")
        for r in summary.itertuples()
    ]
    full = summary[summary["method_key"] == "full"]
    adapters = summary[summary["method_key"].isin(ADAPTERS)]
    agrees, conclusion = None, ""
    if len(full) and len(adapters):
        less = bool((adapters["changed_share"] < full["changed_share"].iloc[0]).all())
        swings = bool(full["gains"].iloc[0] > 0 and full["losses"].iloc[0] > 0)
        conclusion = (
            f"{'every adapter method changes' if less else 'not every adapter method changes'} fewer "
            f"off-task scores decisively than full FT; full FT "
            f"{'swings both ways' if swings else 'does not swing both ways'}. "
        )
        agrees = less and swings if status_of(adjusted) != "insufficient data" else None
    answer = (
        (conclusion[0].upper() + conclusion[1:] if conclusion else "")
        + "Decisive changes against the untuned base, off the training task: "
        + "; ".join(parts)
        + "."
    )
    return Finding(answer, status_of(adjusted), agrees, adjusted, summary.drop(columns="method_key"))


QUESTION = Question(
    id="Q4",
    text="Which method transfers best / forgets least across tasks?",
    reference="adapters drift less; full FT swings both ways",
    how=(
        "Every trained configuration on each task it was not trained on, against the untuned model of the "
        "same base. Per method: decisive gains, losses and ties."
    ),
    answer=decide,
    section="transfer-figure",
)
