"""Cells and tables of the report: numbers for reading, formatted HTML tables, short labels for
configurations, and the compact rows a question's section shows.

Tables have human headers with units, numbers rounded to their measure's precision, a dash where
a value is missing, and short configuration labels. Nothing here decides an answer.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from peftlab.analysis.comparisons import MEASURES
from peftlab.analysis.study_records import TASK_LABELS
from peftlab.tasks.registry import TASKS

DASH = "—"
MAX_ROWS = 12  # a question's compact table; the appendix has every row
TASK_ORDER = tuple(TASKS)
MEASURE_WORDS = {name: m.words for name, m in MEASURES.items()}
MEASURE_SHORT = {name: m.short for name, m in MEASURES.items()}
MEASURE_ROLE = {name: m.role for name, m in MEASURES.items()}


class Html(str):
    """HTML text that a notebook shows rendered."""

    def _repr_html_(self) -> str:
        return str(self)


def shown(method):
    """A ReportView method whose HTML a notebook cell shows."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return Html(method(*args, **kwargs))

    return wrapper


# --------------------------------------------------------------------------------------
# Cells and tables
# --------------------------------------------------------------------------------------


def missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def number(value: Any, digits: int = 2, *, signed: bool = False) -> str:
    """A number for reading: fixed digits, thousands separators, a dash when missing."""
    if missing(value):
        return DASH
    if isinstance(value, (bool,)):
        return yes_no(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    text = f"{v:{'+' if signed else ''},.{digits}f}"
    return text.replace("-", "−")


def yes_no(value: Any) -> str:
    if missing(value):
        return DASH
    return "yes" if bool(value) else "no"


def interval(diff: Any, low: Any, high: Any, digits: int) -> str:
    """'+12.4 [6.1, 18.9]' (a dash for a missing bound)."""
    if missing(diff):
        return DASH
    text = number(diff, digits, signed=True)
    if not missing(low) and not missing(high):
        text += f" [{number(low, digits)}, {number(high, digits)}]"
    return text


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: Callable[[Any], str] | None = None  # default: text, numbers with 2 digits
    text: bool = False  # left-aligned


def cell(value: Any, fmt: Callable[[Any], str] | None = None) -> str:
    if fmt is not None:
        return fmt(value)
    if missing(value):
        return DASH
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return yes_no(value)
    if isinstance(value, (int,)) or type(value).__name__.startswith("int"):
        return f"{int(value):,}"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return number(value, 2)
    return str(value)


def table_html(frame: pd.DataFrame, columns: list[Column], *, classes: str = "compact", note: str = "") -> str:
    """A formatted HTML table: human headers, formatted cells, text left and numbers right."""
    columns = [c for c in columns if c.key in frame.columns]
    out = [f'<table class="{classes}"><thead><tr>']
    out += [f'<th class="{"text" if c.text else "num"}">{html.escape(c.header)}</th>' for c in columns]
    out.append("</tr></thead><tbody>")
    for _, row in frame.iterrows():
        out.append(
            "<tr>"
            + "".join(
                f'<td class="{"text" if c.text else "num"}">{html.escape(cell(row[c.key], c.fmt))}</td>'
                for c in columns
            )
            + "</tr>"
        )
    out.append("</tbody></table>")
    if note:
        out.append(f'<p class="table-note">{html.escape(note)}</p>')
    return "".join(out)


def digits_of(metric: Any) -> int:
    measure = MEASURES.get(metric) if isinstance(metric, str) else None
    return measure.digits if measure else 2


def task_name(task: Any) -> str:
    return DASH if missing(task) else TASK_LABELS.get(task, str(task))


# --------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------


def short_labels(configs: pd.DataFrame) -> dict[str, str]:
    """A short readable label per configuration: the base model is dropped from trained
    configurations when every trained configuration shares one base ('LoRA r256 (OpenMath)');
    untuned models keep it ('Qwen3-1.7B untuned')."""
    if configs is None or configs.empty:
        return {}
    meta = configs.drop_duplicates("config")
    trained = meta[meta["trained"].astype(bool)]
    one_base = trained["base"].nunique() <= 1
    labels = {}
    for _, row in meta.iterrows():
        config = str(row["config"])
        base = str(row["base"])
        if row["trained"] and one_base and config.startswith(base + " "):
            labels[config] = config[len(base) + 1 :]
        else:
            labels[config] = config
    return labels


def relabel(text: str, labels: dict[str, str]) -> str:
    """Every configuration name in ``text`` replaced by its short label (longest names first)."""
    for config in sorted(labels, key=len, reverse=True):
        if labels[config] != config:
            text = text.replace(config, labels[config])
    return text


# --------------------------------------------------------------------------------------
# A question's compact table
# --------------------------------------------------------------------------------------


def capped_table(frame: pd.DataFrame, columns: list[Column], qid: str, what: str = "rows") -> str:
    """A question's compact table: at most MAX_ROWS rows, with a note pointing to the appendix."""
    note = ""
    if len(frame) > MAX_ROWS:
        note = f"{MAX_ROWS} of {len(frame)} {what} shown; all of them in the appendix ({qid})."
        frame = frame.head(MAX_ROWS)
    return table_html(frame, columns, note=note) if len(frame) else ""


def comparison_pairs(comparisons: pd.DataFrame) -> pd.DataFrame:
    """One row per (a, b, task): efficacy and latency differences with intervals and verdicts."""
    rows = []
    for (a, b, task), g in comparisons.groupby(["a", "b", "task"], sort=False):
        row = {"a": a, "b": b, "task": task, "n": g["n"].max()}
        role = g["metric"].map(lambda m: MEASURE_ROLE.get(m, "efficacy"))
        for kind, hit in (
            ("eff", g[role == "efficacy"]),
            ("lat", g[g["metric"] == "latency_s"]),
            ("fmt", g[role == "format"]),
        ):
            if len(hit):
                c = hit.iloc[0]
                flag = f", {c['flag']}" if isinstance(c.get("flag"), str) else ""
                row[kind] = (
                    f"{interval(c['diff'], c['ci_low'], c['ci_high'], digits_of(c['metric']))} ({side_word(c)}{flag})"
                )
                if kind == "eff":
                    row["measure"] = MEASURE_SHORT.get(c["metric"], c["metric"])
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_word(c) -> str:
    """The verdict of 'A vs B' as the appendix reads it."""
    return {"a better": "A better", "b better": "B better"}.get(c["verdict"], str(c["verdict"]))


def side_word(c) -> str:
    """The verdict from A's side: better, worse, tie, or insufficient data."""
    return {"a better": "better", "b better": "worse", "insufficient data": "too few items"}.get(
        c["verdict"], str(c["verdict"])
    )
