"""Table 1 in the reference study's layout, computed from a study's records."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np
import pandas as pd

from peftlab.analysis.study_records import (
    EFFICACY,
    LATENCY_COLUMNS,
    TABLE1_BEST,
    TABLE1_COLUMNS,
    TABLE1_VALUES,
    TASKS,
    StudyRecords,
    _sort_key,
)
from peftlab.core.stats import aggregate_seeds
from peftlab.tasks.registry import TASKS as TASK_REGISTRY


def _status(statuses: list[str]) -> str:
    if not statuses:
        return "missing"
    if all(s == "ok" for s in statuses):
        return "ok"
    if all(s != "ok" for s in statuses):
        return "failed"
    return "partial"


def _model_rows(records: StudyRecords) -> pd.DataFrame:
    """One row per model (seed): Table 1's figures before seeds are aggregated."""
    ev, tr = records.evals, records.trains
    rows = []
    for model in sorted(set(ev["model"]) | set(tr["model"])):
        e, t = ev[ev["model"] == model], tr[tr["model"] == model]
        first = e.iloc[0] if len(e) else t.iloc[0]
        row = {
            k: first[k]
            for k in ("config", "block", "base", "base_size", "method", "method_key", "rank", "train_task", "seed")
        }
        row["model"] = model
        train_failed = bool(len(t)) and (t["status"] != "ok").all()
        row["status"] = "failed" if train_failed else _status(list(e["status"]))
        ok = e[e["status"] == "ok"]
        row["eval_res_gb"] = ok["eval_res_gb"].max() if ok["eval_res_gb"].notna().any() else math.nan
        row["eval_all_gb"] = ok["eval_all_gb"].max() if ok["eval_all_gb"].notna().any() else math.nan
        for task in TASKS:
            hit = ok[ok["task"] == task]
            row[EFFICACY[task][0]] = hit["efficacy"].iloc[0] if len(hit) else math.nan
            row[LATENCY_COLUMNS[task]] = hit["latency_mean_s"].iloc[0] if len(hit) else math.nan
            for column in TASK_REGISTRY[task].presentation.table1_extra:
                row[column.name] = hit[column.name].iloc[0] if len(hit) and column.name in hit else math.nan
        t_ok = t[t["status"] == "ok"]
        row["train_res_gb"] = t_ok["train_res_gb"].iloc[0] if len(t_ok) else math.nan
        row["train_all_gb"] = t_ok["train_all_gb"].iloc[0] if len(t_ok) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def task_columns(task: str) -> tuple[str, ...]:
    """A task's Table 1 columns: efficacy, its further columns, latency."""
    spec = TASK_REGISTRY[task]
    extra = (c.name for c in spec.presentation.table1_extra)
    return (spec.presentation.efficacy_column, *extra, spec.latency_column)


def table1(records: StudyRecords) -> pd.DataFrame:
    """The study's Table 1: one row per evaluated configuration.

    Columns ``TABLE1_COLUMNS`` (NaN where not measured; a registered task no record evaluated
    has no columns), then, when any configuration has
    several seeds, ``<col>_std`` for every figure and ``n_seeds``, and last ``status`` ("ok",
    "partial" when some of its records failed, "failed"). Eval memory is the maximum over the
    model's evaluation tasks (CUDA peak reserved / allocated; on a CPU the peak RSS is under
    ``eval_res_gb``/``train_res_gb`` and the "all" columns are NaN); latency is the mean
    batch-1 latency. Rows run block by block (OpenMath, SQuAD v2, base models), methods
    Full FT, LoRA, DoRA, VeRA, ranks ascending.
    """
    rows = _model_rows(records)
    columns = list(TABLE1_COLUMNS) + ["status"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    values = list(TABLE1_VALUES)
    agg = aggregate_seeds(rows, ["config"], values)
    meta = rows.groupby("config", sort=False).agg(
        block=("block", "first"),
        base=("base", "first"),
        base_size=("base_size", "first"),
        method=("method", "first"),
        rank=("rank", "first"),
        status=("status", lambda s: "ok" if (s == "ok").all() else ("failed" if (s == "failed").all() else "partial")),
    )
    table = meta.join(agg.set_index("config"))
    table = table.iloc[np.lexsort(_sort_key(table)[["n", "s", "r", "m", "b"]].to_numpy().T)]
    table["rank"] = pd.array([None if pd.isna(r) else int(r) for r in table["rank"]], dtype="Int64")
    if (table["n_seeds"] > 1).any():
        columns = list(TABLE1_COLUMNS) + [f"{c}_std" for c in values] + ["n_seeds", "status"]
    evaluated = set(records.evals["task"])
    absent = {
        f"{c}{suffix}" for t in TASK_REGISTRY if t not in evaluated for c in task_columns(t) for suffix in ("", "_std")
    }
    return table.reset_index(drop=True)[[c for c in columns if c not in absent]]


def table1_best(table: pd.DataFrame) -> pd.DataFrame:
    """Booleans shaped like ``table``: True at the best value of each block in each figure column.

    Best is the maximum for F1 columns and the minimum for AbsDiff, latency and memory; ties
    are all marked; NaN is never best.
    """
    best = pd.DataFrame(False, index=table.index, columns=table.columns)
    for _, block in table.groupby("block", sort=False):
        for column, higher in TABLE1_BEST.items():
            if column not in table.columns:
                continue
            values = pd.to_numeric(block[column], errors="coerce")
            if values.notna().sum() == 0:
                continue
            target = values.max() if higher else values.min()
            hit = values.index[np.isclose(values.fillna(np.inf if not higher else -np.inf), target, rtol=1e-12, atol=0)]
            best.loc[hit, column] = True
    return best


_HTML_GROUPS = (
    ("", (("base", "Base"), ("method", "PEFT"), ("rank", "r"))),
    (
        "VRAM GB",
        (
            ("train_res_gb", "Train Res."),
            ("train_all_gb", "Train All."),
            ("eval_res_gb", "Eval Res."),
            ("eval_all_gb", "Eval All."),
        ),
    ),
    *(
        (
            task.label,
            (
                (task.presentation.efficacy_column, task.presentation.efficacy_header[0]),
                *((c.name, c.header) for c in task.presentation.table1_extra if c.shown),
                (task.latency_column, "Latency s ↓"),
            ),
        )
        for task in TASK_REGISTRY.values()
    ),
)
_HTML_DIGITS = {
    "train_res_gb": 3,
    "train_all_gb": 3,
    "eval_res_gb": 3,
    "eval_all_gb": 3,
    **{task.presentation.efficacy_column: task.presentation.efficacy_header[1] for task in TASK_REGISTRY.values()},
    **{c.name: c.digits for task in TASK_REGISTRY.values() for c in task.presentation.table1_extra},
    **{task.latency_column: 4 for task in TASK_REGISTRY.values()},
}
_OUT_OF = {c.name: c.out_of for task in TASK_REGISTRY.values() for c in task.presentation.table1_extra if c.out_of}
_FLAG_ABOVE = {
    c.name: c.flag_above for task in TASK_REGISTRY.values() for c in task.presentation.table1_extra if c.flag_above
}


def _fmt(value: Any, digits: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):,.{digits}f}"


def table1_html(table: pd.DataFrame, *, caption: str | None = None) -> str:
    """Table 1 as a self-contained HTML table in the study's layout, best per block in bold.

    A block title row precedes each block; missing values are "—"; with several seeds a
    figure reads "mean ± std"; a configuration whose records failed is marked in its PEFT
    cell; a share of replies cut at the cap above its limit is flagged "⚠".
    """
    best = table1_best(table)
    groups = [(title, group) for title, group in _HTML_GROUPS if all(column in table.columns for column, _ in group)]
    leaves = [leaf for _, group in groups for leaf in group]
    style = (
        "<style>table.table1{border-collapse:collapse;font-family:sans-serif;font-size:13px}"
        "table.table1 th,table.table1 td{border:1px solid #bbb;padding:3px 6px;text-align:right}"
        "table.table1 td.text{text-align:left}table.table1 tr.block td{background:#eee;font-weight:bold;"
        "text-align:left}table.table1 tr.failed td{color:#a00}table.table1 .flag{color:#a00;font-weight:bold}</style>"
    )
    out = [style, '<table class="table1">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>")
    for title, group in groups:
        out.append(f'<th colspan="{len(group)}">{html.escape(title)}</th>')
    out.append("</tr><tr>")
    out.extend(f"<th>{html.escape(label)}</th>" for _, label in leaves)
    out.append("</tr></thead><tbody>")
    for block, rows in table.groupby("block", sort=False):
        out.append(f'<tr class="block"><td colspan="{len(leaves)}">{html.escape(str(block))}</td></tr>')
        for index, row in rows.iterrows():
            status = row.get("status", "ok")
            out.append(f'<tr class="{"failed" if status != "ok" else "ok"}">')
            for column, _ in leaves:
                if column in ("base", "method", "rank"):
                    text = "—" if pd.isna(row[column]) else str(row[column])
                    if column == "method" and status not in ("ok", None):
                        text += f" ({status})"
                    out.append(f'<td class="text">{html.escape(text)}</td>')
                    continue
                if column in _OUT_OF:  # a count out of another column: "k/n"
                    parsed, n = row.get(column), row.get(_OUT_OF[column])
                    text = "—" if pd.isna(parsed) or pd.isna(n) else f"{parsed:.0f}/{n:.0f}"
                    out.append(f"<td>{text}</td>")
                    continue
                text = _fmt(row[column], _HTML_DIGITS[column])
                std = row.get(f"{column}_std")
                if std is not None and not pd.isna(std) and text != "—":
                    text += f" ± {_fmt(std, _HTML_DIGITS[column])}"
                if best.loc[index, column]:
                    text = f"<b>{text}</b>"
                if column in _FLAG_ABOVE and pd.notna(row[column]) and row[column] > _FLAG_ABOVE[column]:
                    text = (
                        f'<span class="flag" title="more than {_FLAG_ABOVE[column]:g} % of replies cut">{text} ⚠</span>'  # noqa: E501
                    )
                out.append(f"<td>{text}</td>")
            out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)
