"""Q4: which method transfers best and forgets least across tasks.

Every trained configuration off its training task against the untuned model of its base;
counted per method.
"""

from __future__ import annotations

import pandas as pd

from peftlab.analysis.comparisons import Analysis
from peftlab.analysis.questions.common import format_comparisons, status_of
from peftlab.analysis.questions.entry import Finding, Question
from peftlab.analysis.study_records import ADAPTERS, METHOD_LABELS


def decide(an: Analysis) -> Finding:
    pairs = []
    trained = an.cfg[an.cfg["trained"].astype(bool) & (an.cfg["task"] != an.cfg["train_task"])]
    for r in trained.itertuples():
        base_cfg = an.untuned(r.base)
        if base_cfg is not None and an.row(base_cfg, r.task) is not None:
            pairs.append((r.config, base_cfg, r.task))
    comps = [an.compare(a, b, task) for a, b, task in pairs]
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
    # The answer format, a family of its own: learning to write the box is not knowing more.
    fmt = format_comparisons(an, pairs, "Q4 format")
    fmt["method_key"] = fmt["a"].map(methods)
    moved = fmt.groupby("method_key", sort=False)["better"].agg(
        format_gains=lambda b: int((b == "a").sum()), format_losses=lambda b: int((b == "b").sum())
    )
    summary = summary.join(moved, on="method_key").fillna({"format_gains": 0, "format_losses": 0})
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
    formats_text = (
        " Separately, the answer format (replies in the protocol's box), which is not the skill: "
        + "; ".join(
            f"{r.method}: {int(r.format_gains)} gains, {int(r.format_losses)} losses" for r in summary.itertuples()
        )
        + "."
        if len(fmt)
        else ""
    )
    answer = (
        (conclusion[0].upper() + conclusion[1:] if conclusion else "")
        + "Decisive changes in the skill (efficacy without the answer format) against the untuned base, off the "
        "training task: " + "; ".join(parts) + "." + formats_text
    )
    both = pd.concat([adjusted, fmt.drop(columns="method_key")], ignore_index=True) if len(fmt) else adjusted
    return Finding(answer, status_of(adjusted), agrees, both, summary.drop(columns="method_key"))


QUESTION = Question(
    id="Q4",
    text="Which method transfers best / forgets least across tasks?",
    reference="adapters drift less; full FT swings both ways",
    how=(
        "Every trained configuration on each task it was not trained on, against the untuned model of the "
        "same base, on the skill (efficacy without the answer format: log-likelihood choice or the flexible "
        "reading) and, as a separate family, on the share of replies in the answer format. Per method: "
        "decisive gains, losses and ties of each; the verdict rests on the skill."
    ),
    answer=decide,
    section="transfer-figure",
)
