"""Small helpers every task module shares: reply text, means, rounding, class codes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from peftlab.tasks.base import Column, Measure

CUT_FLAG = 10.0  # % of replies at max_new_tokens above which a model x task is flagged as cut


def as_text(reply: Any) -> str:
    return reply if isinstance(reply, str) else ("" if reply is None else str(reply))


def check_lengths(replies: Sequence[Any], golds: Sequence[Any]) -> None:
    if len(replies) != len(golds):
        raise ValueError(f"replies and golds differ in length: {len(replies)} replies, {len(golds)} golds")


def mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if len(values) else None


def maybe_round(value: float | None, digits: int, rounded: bool) -> float | None:
    if value is None or not rounded:
        return value
    return round(value, digits)


def percent(name: str) -> tuple[str, float]:
    """An items-file column read as a percentage."""
    return (name, 100.0)


def class_codes(values, labels) -> list[int]:
    lookup = {c: i for i, c in enumerate(labels)}
    return [lookup.get(v, -1) if isinstance(v, str) else -1 for v in values]


def number(value) -> float:
    """A record's figure as a float; NaN when it is missing or not a number."""
    try:
        return float(value) if value is not None and not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        return float("nan")


# --- the measures of skill and of format every generative task has --------------------------------


def skill_measures(prefix: str, label: str, *, loglik: bool = False, flexible: str = "accuracy") -> tuple:
    """A task's format-free measures (log-likelihood choice, the flexible reading) and its format
    measure (the share of replies in the protocol's answer format, a measure of its own)."""
    chance = "chance" if loglik else None
    measures = []
    if loglik:  # lm-eval's acc_norm (per character of the option) and acc (the summed log-likelihood)
        measures += [
            Measure(
                f"{prefix}_loglik_{name}",
                f"{label} log-likelihood accuracy ({words})",
                "%",
                {"corrected": (f"ll_{name}", 100.0)},
                words="accuracy points",
                short=f"{name} %",
                chance=chance,
            )
            for name, words in (("acc_norm", "per character, acc_norm"), ("acc", "acc"))
        ]
    measures += [
        Measure(
            f"{prefix}_flex_{flexible.lower()}",
            f"{label} {flexible}, flexible reading",
            "%",
            {"corrected": ("flex_score", 100.0)},
            words=f"{flexible} points",
            short=f"flexible {flexible} %",
            chance=chance,
        ),
        Measure(
            f"{prefix}_format",
            f"{label} replies in the answer format",
            "%",
            {"corrected": ("format_ok", 100.0), "reference": ("format_ok", 100.0)},
            words="format points",
            short="in format %",
            role="format",
        ),
    ]
    return tuple(measures)


def skill_columns(prefix: str, *, loglik: bool = False) -> tuple[Column, ...]:
    columns = []
    if loglik:
        columns += [
            Column(f"{prefix}_ll_acc", "LL acc % ↑", 1, best_is_max=True),
            Column(f"{prefix}_ll_acc_norm", "LL acc_norm % ↑", 1, best_is_max=True),
        ]
    return (
        *columns,
        Column(f"{prefix}_flex", "Flexible % ↑", 1, best_is_max=True),
        Column(f"{prefix}_format", "In format %", 1),
        Column(f"{prefix}_cut", "Cut %", 1, flag_above=CUT_FLAG),
    )


def skill_figures(prefix: str, *, loglik: bool = False) -> Callable[[dict, str], dict]:
    """(record, scoring) -> the record's figures for `skill_columns` (percent; NaN where it has none:
    imported records, items scored before these measures existed, the reference scoring's
    format-free measures)."""

    def figures(record: dict, scoring_name: str) -> dict:
        metrics = record.get("metrics") or {}
        corrected = metrics.get("corrected") or {}
        nan = float("nan")
        own = scoring_name == "corrected"
        out = {
            f"{prefix}_flex": 100 * number(corrected.get("flexible")) if own else nan,
            f"{prefix}_cut": 100 * number(corrected.get("cut_rate")),
            f"{prefix}_format": (
                100 * number(corrected.get("format_rate"))
                if own
                else number((metrics.get("reference") or {}).get("format_success_rate"))
            ),
        }
        if loglik:
            out[f"{prefix}_ll_acc"] = 100 * number(corrected.get("loglik_acc")) if own else nan
            out[f"{prefix}_ll_acc_norm"] = 100 * number(corrected.get("loglik_acc_norm")) if own else nan
        return out

    return figures
