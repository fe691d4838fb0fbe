"""Small helpers every task module shares: reply text, means, rounding, class codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
