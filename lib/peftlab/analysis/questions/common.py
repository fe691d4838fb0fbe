"""Helpers the answer functions share: how a comparison reads in an answer, a question's status
from its comparisons, who won, the training-memory column, and best sets.

Every answer rests on the comparisons of ``peftlab.analysis.comparisons`` (paired, cluster
bootstrap, Holm within the question's family, a minimum n, timing noise for latency).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from peftlab.analysis.comparisons import COMPARISON_COLUMNS, FORMAT_MEASURES, MEASURES, Analysis
from peftlab.analysis.study_records import TASK_LABELS

EFFICACY_NOTE = (
    "efficacy: ARC macro-F1, OpenMath exact-match accuracy, SQuAD v2 F1, each over every item "
    "(imported records without per-item scores: accuracy / exact match from their counts)"
)


# --------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------


def task_label(task: Any) -> str:
    return TASK_LABELS.get(task, str(task))


def _num(value: float, digits: int) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def amount(value: float, metric: str | None, *, signed: bool = False) -> str:
    """A difference in its measure's unit: '+12.4 points' (percentages), '0.031 s', '0.052'."""
    measure = MEASURES.get(metric) if metric else None
    digits = measure.digits if measure else 3
    unit = "" if not measure or not measure.unit else (" points" if measure.unit == "%" else f" {measure.unit}")
    if value is None or pd.isna(value):
        return "–"
    return f"{value:{'+' if signed else ''}.{digits}f}{unit}"


def describe(c: pd.Series | dict) -> str:
    """A comparison for reading: 'a vs b on Task: diff unit [low, high], n = N (verdict)'."""
    measure = MEASURES.get(c["metric"]) if c.get("metric") else None
    digits = measure.digits if measure else 3
    unit = "" if not measure or not measure.unit else (" points" if measure.unit == "%" else f" {measure.unit}")
    head = f"{c['a']} vs {c['b']} on {task_label(c['task'])}"
    if c["verdict"] == "insufficient data":
        point = f"{c['diff']:+.{digits}f}{unit}, " if pd.notna(c["diff"]) else ""
        return f"{head}: {point}insufficient data ({c['note']})"
    text = (
        f"{head}: {c['diff']:+.{digits}f}{unit} [{_num(c['ci_low'], digits)}, {_num(c['ci_high'], digits)}], "
        f"n = {int(c['n'])}"
    )
    if c["verdict"] == "tie":
        text += f", tie: no difference larger than {c['mde']:.{digits}f}{unit} (80 % power)"
        if c.get("note") and "timing noise" in str(c["note"]):
            text += f"; {c['note']}"
    return text


def failed_note(names: list[str]) -> str:
    return f" Failed, so not compared: {', '.join(names)}." if names else ""


# --------------------------------------------------------------------------------------
# Deciding
# --------------------------------------------------------------------------------------


def status_of(comparisons: pd.DataFrame) -> str:
    """decisive if any comparison is; tie if some could be tested; else insufficient data."""
    if comparisons.empty or (comparisons["verdict"] == "insufficient data").all():
        return "insufficient data"
    return "decisive" if comparisons["decisive"].any() else "tie"


def won(c: pd.Series, side: str) -> bool:
    return bool(c["decisive"]) and c["better"] == side


def memory_column(frame: pd.DataFrame) -> str:
    """Training memory to decide with: allocated (CUDA) where measured, else resident / RSS."""
    return "train_all_gb" if frame["train_all_gb"].notna().any() else "train_res_gb"


def best_set(an: Analysis, frame: pd.DataFrame, task: str, comparisons: list, tiebreak: str | None = None):
    """Top configuration by efficacy in ``frame`` and (after adjustment) those it does not beat."""
    top = an.top(frame, "score", True, tiebreak=tiebreak)
    if top is None:
        return None
    for other in frame[frame["config"] != top["config"]]["config"]:
        comparisons.append(an.compare(top["config"], other, task))
    return top


def best_members(top: str, frame: pd.DataFrame, adjusted: pd.DataFrame, task: str) -> list[str]:
    """``top`` and every configuration of ``frame`` it does not beat decisively on ``task``."""
    members = [top]
    for other in frame[frame["config"] != top]["config"]:
        hit = adjusted[(adjusted["a"] == top) & (adjusted["b"] == other) & (adjusted["task"] == task)]
        if hit.empty or not won(hit.iloc[0], "a"):
            members.append(other)
    return members


def format_comparisons(an: Analysis, pairs: list[tuple[str, str, str]], family: str) -> pd.DataFrame:
    """The answer format of each (a, b, task) pair, as a family of its own (Holm within it): learning
    to write the protocol's box is not knowing more, so it is never pooled with the skill."""
    comps = [an.compare(a, b, task, FORMAT_MEASURES[task]) for a, b, task in pairs if task in FORMAT_MEASURES]
    return an.adjust(comps, family) if comps else pd.DataFrame(columns=COMPARISON_COLUMNS)
