"""Table 1, the study's nine questions and the comparison of two protocols, from result records.

Everything here is computed from the files a study writes (``outputs/<study>/runs/<model>/``:
``train.json``, ``eval-<task>.json``, ``items-<task>.parquet``), never typed in: the same
code reads the project's own runs and the reference study's imported results
(``peftlab.reference``).

Efficacy
    The metric Table 1 shows, taken from the scoring of the study's protocol: a record of
    the ``reference`` protocol (imported or re-run) is read from ``metrics.reference``, a
    ``corrected`` one from ``metrics.corrected``. ARC: macro-F1 (0..1, higher is better);
    OpenMath: mean absolute difference over parsed replies (lower is better); SQuAD v2: F1
    in percent (higher is better).

Configurations and seeds
    A configuration is (base model, method, rank, training task); its seeds are averaged
    (``stats.aggregate_seeds``), with their spread kept as ``*_std`` and ``n_seeds``.

Uncertainty
    An efficacy or latency difference between two configurations gets a paired bootstrap
    95 % interval over the items both were evaluated on (``stats.paired_bootstrap_diff`` for
    means of per-item values; ``stats.paired_bootstrap_metric`` for macro-F1 and the mean
    absolute difference). A difference whose interval contains zero is a tie. With several
    seeds, seed k of one configuration is paired with seed k of the other (a single run is
    reused for every seed) and the items of all seeds are resampled together. Records
    without per-item scores (the imported reference results) give the point difference
    only, marked "no per-item scores: no interval". Where a question needs to call a
    difference material, it uses the study's own threshold: more than 2 % relative
    (``MATERIAL``) and, when an interval exists, an interval that excludes zero.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import scoring
from .config import resolve_path
from .results import ResultError, read_record
from .stats import aggregate_seeds, paired_bootstrap_diff, paired_bootstrap_metric, pareto_front

TASKS = ("arc", "openmath", "squad_v2")
TASK_LABELS = {"arc": "ARC", "openmath": "OpenMath", "squad_v2": "SQuAD v2"}
BLOCKS = {"openmath": "Trained on OpenMath", "squad_v2": "Trained on SQuAD v2", "arc": "Trained on ARC",
          None: "Base models"}
BLOCK_ORDER = ("Trained on OpenMath", "Trained on SQuAD v2", "Trained on ARC", "Base models")
METHOD_LABELS = {"full": "Full FT", "lora": "LoRA", "dora": "DoRA", "vera": "VeRA", "base": "—"}
METHOD_ORDER = ("Full FT", "LoRA", "DoRA", "VeRA", "—")
ADAPTERS = ("lora", "dora", "vera")
# Efficacy per task: (Table 1 column, higher_is_better).
EFFICACY = {"arc": ("arc_f1", True), "openmath": ("openmath_absdiff", False), "squad_v2": ("squad_f1", True)}
LATENCY_COLUMNS = {"arc": "arc_latency_s", "openmath": "openmath_latency_s", "squad_v2": "squad_latency_s"}
# Where a protocol's scoring keeps Table 1's metric, and the factor to Table 1's unit.
EFFICACY_KEYS = {
    "reference": {"arc": ("macro_f1", 1.0), "openmath": ("avg_abs_diff", 1.0), "squad_v2": ("F1", 1.0)},
    "corrected": {"arc": ("macro_f1", 1.0), "openmath": ("mean_abs_diff", 1.0), "squad_v2": ("f1", 100.0)},
}

TABLE1_COLUMNS = ("block", "base", "method", "rank", "train_res_gb", "train_all_gb", "eval_res_gb", "eval_all_gb",
                  "arc_f1", "arc_latency_s", "openmath_absdiff", "openmath_latency_s", "squad_f1",
                  "squad_latency_s")
TABLE1_VALUES = TABLE1_COLUMNS[4:]
# Best per block: True = the maximum, False = the minimum.
TABLE1_BEST = {"train_res_gb": False, "train_all_gb": False, "eval_res_gb": False, "eval_all_gb": False,
               "arc_f1": True, "arc_latency_s": False, "openmath_absdiff": False, "openmath_latency_s": False,
               "squad_f1": True, "squad_latency_s": False}

MATERIAL = 0.02  # a relative change of at most 2 % is "not material" (the study's own threshold, Q3)
NO_ITEMS = "no per-item scores: no interval"

QUESTIONS = (
    ("Q1", "Which method has the best in-domain efficacy–efficiency balance?", "full FT"),
    ("Q2", "Do adapters approach or beat full FT, and the larger base?", "no, neither"),
    ("Q3", "Does rank change the efficacy–latency–memory trade-off?", "not materially (≤ 1–2 %)"),
    ("Q4", "Which method transfers best / forgets least across tasks?",
     "adapters drift less; full FT swings both ways"),
    ("Q5", "Which configurations minimise inference cost?", "full FT on the small base"),
    ("Q6", "Under a training-memory cap, best accuracy per GB?",
     "VeRA at the hardest cap, then LoRA/DoRA, then full FT"),
    ("Q7", "If memory forces adapters, is fine-tuning still worth it?",
     "for math/MCQ yes (latency), for extractive QA no"),
    ("Q8", "With ample memory, does full FT dominate?", "yes"),
    ("Q9", "Which configurations are Pareto-optimal over efficacy, latency, memory?",
     "1.7B base (quality), 0.6B full FT (serve), a SQuAD adapter (latency)"),
)


# ======================================================================================
# Loading
# ======================================================================================


PRESET_NAMES = {"embedded": "SmolLM2-135M-Instruct", "tiny": "tiny-Qwen3"}


def _base_name(base_model: str | None) -> str | None:
    """'Qwen/Qwen3-0.6B' -> 'Qwen3-0.6B'; 'embedded' -> 'SmolLM2-135M-Instruct'."""
    if not base_model:
        return None
    if base_model in PRESET_NAMES:
        return PRESET_NAMES[base_model]
    return Path(str(base_model).rstrip("/")).name


def _base_size(base_model: str | None, n_params: Any = None) -> float:
    """Parameters of a base model: from its name ('1.7B', '135M'), else the recorded count."""
    match = re.search(r"(\d+(?:\.\d+)?)\s*([BbMm])(?![A-Za-z])", _base_name(base_model) or "")
    if match:
        return float(match[1]) * (1e9 if match[2] in "Bb" else 1e6)
    try:
        value = float(n_params)
    except (TypeError, ValueError):
        return math.nan
    return value if value > 0 else math.nan


def _num(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _error_text(record: dict) -> str | None:
    error = record.get("error")
    if not error:
        return None
    if isinstance(error, dict):
        return f"{error.get('type')}: {error.get('message')}" + (f" (phase {error['phase']})" if error.get("phase")
                                                                 else "")
    return str(error)


def _memory_figures(memory: Any) -> tuple[float, float, str | None]:
    """(resident GB, all-allocated GB, kind): CUDA peak reserved/allocated, or CPU peak RSS."""
    if not isinstance(memory, dict):
        return math.nan, math.nan, None
    if memory.get("device") == "cuda":
        return _num(memory.get("peak_reserved_gb")), _num(memory.get("peak_allocated_gb")), "cuda"
    if "peak_rss_gb" in memory:
        return _num(memory.get("peak_rss_gb")), math.nan, "cpu-rss"
    return math.nan, math.nan, None


def _config_label(base: str | None, method: str, rank: Any, train_task: str | None) -> str:
    if method == "base":
        return f"{base} untuned"
    tag = f" r{int(rank)}" if rank is not None and not pd.isna(rank) else ""
    return f"{base} {METHOD_LABELS.get(method, method)}{tag} ({TASK_LABELS.get(train_task, train_task)})"


def _identity(model: dict, config: dict) -> dict:
    method = model.get("method") or config.get("method")
    trained = bool(model.get("trained", method not in (None, "base")))
    if not trained:
        method = "base"
    rank = model.get("rank") if trained and method != "full" else None
    train_task = model.get("train_task") if trained else None
    base_model = model.get("base_model") or config.get("base_model")
    base = _base_name(base_model)
    return {
        "config": _config_label(base, method, rank, train_task),
        "block": BLOCKS.get(train_task, f"Trained on {train_task}"),
        "base": base,
        "base_model": base_model,
        "base_size": _base_size(base_model, model.get("n_params")),
        "method": METHOD_LABELS.get(method, method),
        "method_key": method,
        "rank": rank,
        "seed": model.get("seed") if trained else None,
        "train_task": train_task,
        "trained": trained,
    }


def _efficacy(record: dict, task: str) -> tuple[float, str, str | None]:
    """(value in Table 1's unit, scoring used, metric key) of an ok eval record."""
    protocol = record.get("protocol") or (record.get("config") or {}).get("protocol") or "corrected"
    scoring_name = "reference" if protocol == "reference" else "corrected"
    key, factor = EFFICACY_KEYS[scoring_name].get(task, (None, 1.0))
    metrics = ((record.get("metrics") or {}).get(scoring_name)) or {}
    return _num(metrics.get(key)) * factor if key else math.nan, scoring_name, key


def _eval_row(model: str, record: dict, train: dict | None = None) -> dict:
    task = record.get("task")
    identity = dict(record.get("model") or {})
    if identity.get("trained"):
        # The evaluated model of a training run is its merged checkpoint; the base it was trained
        # from is in the training record (else in the run configuration).
        base = ((train or {}).get("config") or {}).get("base_model") or (record.get("config") or {}).get("base_model")
        if base:
            identity["base_model"] = base
    ident = _identity(identity, record.get("config") or {})
    ok = record["status"] == "ok"
    efficacy, scoring_name, key = _efficacy(record, task) if ok else (math.nan, None, None)
    latency = (record.get("latency") or {}) if ok else {}
    res, alloc, kind = _memory_figures(record.get("memory")) if ok else (math.nan, math.nan, None)
    model_info = record.get("model") or {}
    return {
        "model": model, **ident, "task": task, "status": record["status"], "error": _error_text(record),
        "protocol": record.get("protocol") or (record.get("config") or {}).get("protocol"),
        "scoring": scoring_name, "efficacy": efficacy, "efficacy_metric": key,
        "higher_is_better": EFFICACY.get(task, (None, True))[1],
        "parse_rate": _num(record.get("parse_rate")) if ok else math.nan,
        "latency_mean_s": _num(latency.get("mean_s")), "latency_median_s": _num(latency.get("median_s")),
        "latency_p90_s": _num(latency.get("p90_s")), "tokens_mean": _num(latency.get("tokens_mean")),
        "s_per_token": _num(latency.get("s_per_token")),
        "eval_res_gb": res, "eval_all_gb": alloc, "memory_kind": kind,
        "dtype": model_info.get("dtype"), "n_items": record.get("n_items"),
        "imported": "imported_from" in record,
    }


def _train_row(model: str, record: dict) -> dict:
    config = record.get("config") or {}
    ident = _identity({"trained": True, "method": config.get("method"), "rank": config.get("rank"),
                       "train_task": config.get("train_task"), "seed": config.get("seed"),
                       "base_model": config.get("base_model")}, config)
    ok = record["status"] == "ok"
    res, alloc, kind = _memory_figures(record.get("memory")) if ok else (math.nan, math.nan, None)
    timings = record.get("timings") or {}
    return {
        "model": model, **ident, "status": record["status"], "error": _error_text(record),
        "protocol": config.get("protocol"), "train_res_gb": res, "train_all_gb": alloc, "memory_kind": kind,
        "trainable_params": _num(record.get("trainable_params")), "total_params": _num(record.get("total_params")),
        "train_s": _num(timings.get("train_s")), "tokens_per_s": _num(record.get("tokens_per_s")),
        "final_loss": _num(record.get("final_loss")), "learning_rate": _num(record.get("learning_rate")),
        "alpha": _num(record.get("alpha")), "imported": "imported_from" in record,
    }


EVAL_COLUMNS = ("model", "config", "block", "base", "base_model", "base_size", "method", "method_key", "rank",
                "seed", "train_task", "trained", "task", "status", "error", "protocol", "scoring", "efficacy",
                "efficacy_metric", "higher_is_better", "parse_rate", "latency_mean_s", "latency_median_s",
                "latency_p90_s", "tokens_mean", "s_per_token", "eval_res_gb", "eval_all_gb", "memory_kind",
                "dtype", "n_items", "imported")
TRAIN_COLUMNS = ("model", "config", "block", "base", "base_model", "base_size", "method", "method_key", "rank",
                 "seed", "train_task", "trained", "status", "error", "protocol", "train_res_gb", "train_all_gb",
                 "memory_kind", "trainable_params", "total_params", "train_s", "tokens_per_s", "final_loss",
                 "learning_rate", "alpha", "imported")


@dataclass
class StudyRecords:
    """Every record of one study, as read from ``<out>/runs/*/``.

    ``evals``: one row per (model, task) eval record; ``trains``: one row per train record;
    ``eval_records`` / ``train_records``: the records themselves; ``items(model, task)``: the
    per-item frame of an ok evaluation (None when there is none).
    """

    out: Path
    eval_records: dict[tuple[str, str], dict]
    train_records: dict[str, dict]
    evals: pd.DataFrame
    trains: pd.DataFrame
    _items: dict[tuple[str, str], pd.DataFrame | None] = field(default_factory=dict, repr=False)

    @property
    def protocols(self) -> list[str]:
        return sorted({p for p in self.evals.get("protocol", pd.Series(dtype=object)).dropna()})

    def items(self, model: str, task: str) -> pd.DataFrame | None:
        key = (model, task)
        if key not in self._items:
            record = self.eval_records.get(key)
            path = self.out / "runs" / model / f"items-{task}.parquet"
            frame = None
            if record is not None and record["status"] == "ok" and path.is_file():
                try:
                    frame = pd.read_parquet(path)
                except Exception as exc:  # pyarrow raises several types for a damaged file
                    raise ResultError(f"items file {path} is corrupted or truncated ({exc}); delete it and "
                                      "rerun the evaluation") from exc
            self._items[key] = frame
        return self._items[key]


def load_study(out: str | Path) -> StudyRecords:
    """Read every ``train.json`` and ``eval-*.json`` under ``out/runs/*``.

    A damaged or foreign file raises ``ResultError`` naming it (``results.read_record``); it is
    never read as data. Relative paths are taken from the repository root.
    """
    out = resolve_path(out)
    runs = out / "runs"
    if not runs.is_dir():
        raise ResultError(f"{out} holds no study results (no folder {runs})")
    eval_records: dict[tuple[str, str], dict] = {}
    train_records: dict[str, dict] = {}
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        train_path = run_dir / "train.json"
        if train_path.exists():
            record = read_record(train_path)
            if record["kind"] != "train":
                raise ResultError(f"{train_path} is a {record['kind']!r} record, not a training record")
            train_records[run_dir.name] = record
        for path in sorted(run_dir.glob("eval-*.json")):
            record = read_record(path)
            if record["kind"] != "eval":
                raise ResultError(f"{path} is a {record['kind']!r} record, not an evaluation record")
            task = record.get("task") or path.stem.removeprefix("eval-")
            eval_records[(run_dir.name, task)] = record
    evals = pd.DataFrame([_eval_row(m, r, train_records.get(m)) for (m, _), r in eval_records.items()],
                         columns=list(EVAL_COLUMNS))
    trains = pd.DataFrame([_train_row(m, r) for m, r in train_records.items()], columns=list(TRAIN_COLUMNS))
    for frame in (evals, trains):
        frame["rank"] = pd.array([None if pd.isna(r) else int(r) for r in frame["rank"]], dtype="Int64")
    return StudyRecords(out=out, eval_records=eval_records, train_records=train_records, evals=evals, trains=trains)


# ======================================================================================
# Table 1
# ======================================================================================


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
        row = {k: first[k] for k in ("config", "block", "base", "base_size", "method", "method_key", "rank",
                                     "train_task", "seed")}
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
        t_ok = t[t["status"] == "ok"]
        row["train_res_gb"] = t_ok["train_res_gb"].iloc[0] if len(t_ok) else math.nan
        row["train_all_gb"] = t_ok["train_all_gb"].iloc[0] if len(t_ok) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _sort_key(frame: pd.DataFrame) -> pd.DataFrame:
    order = pd.DataFrame(index=frame.index)
    order["b"] = frame["block"].map(lambda b: BLOCK_ORDER.index(b) if b in BLOCK_ORDER else len(BLOCK_ORDER))
    order["m"] = frame["method"].map(lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))
    order["r"] = pd.to_numeric(frame["rank"], errors="coerce").fillna(-1)
    order["s"] = pd.to_numeric(frame["base_size"], errors="coerce").fillna(0)
    order["n"] = frame["base"].astype(str)
    return order


def table1(records: StudyRecords) -> pd.DataFrame:
    """The study's Table 1: one row per evaluated configuration.

    Columns ``TABLE1_COLUMNS`` (NaN where not measured), then, when any configuration has
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
        block=("block", "first"), base=("base", "first"), base_size=("base_size", "first"),
        method=("method", "first"), rank=("rank", "first"),
        status=("status", lambda s: "ok" if (s == "ok").all() else ("failed" if (s == "failed").all()
                                                                      else "partial")))
    table = meta.join(agg.set_index("config"))
    table = table.iloc[np.lexsort(_sort_key(table)[["n", "s", "r", "m", "b"]].to_numpy().T)]
    table["rank"] = pd.array([None if pd.isna(r) else int(r) for r in table["rank"]], dtype="Int64")
    if (table["n_seeds"] > 1).any():
        columns = list(TABLE1_COLUMNS) + [f"{c}_std" for c in values] + ["n_seeds", "status"]
    return table.reset_index(drop=True)[columns]


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
            hit = values.index[np.isclose(values.fillna(np.inf if not higher else -np.inf), target,
                                          rtol=1e-12, atol=0)]
            best.loc[hit, column] = True
    return best


_HTML_GROUPS = (
    ("", (("base", "Base"), ("method", "PEFT"), ("rank", "r"))),
    ("VRAM GB", (("train_res_gb", "Train Res."), ("train_all_gb", "Train All."), ("eval_res_gb", "Eval Res."),
                 ("eval_all_gb", "Eval All."))),
    ("ARC", (("arc_f1", "F1 ↑"), ("arc_latency_s", "Latency s ↓"))),
    ("OpenMath", (("openmath_absdiff", "AbsDiff ↓"), ("openmath_latency_s", "Latency s ↓"))),
    ("SQuAD v2", (("squad_f1", "F1 ↑"), ("squad_latency_s", "Latency s ↓"))),
)
_HTML_DIGITS = {"train_res_gb": 3, "train_all_gb": 3, "eval_res_gb": 3, "eval_all_gb": 3, "arc_f1": 4,
                "arc_latency_s": 4, "openmath_absdiff": 2, "openmath_latency_s": 4, "squad_f1": 2,
                "squad_latency_s": 4}


def _fmt(value: Any, digits: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):,.{digits}f}"


def table1_html(table: pd.DataFrame, *, caption: str | None = None) -> str:
    """Table 1 as a self-contained HTML table in the study's layout, best per block in bold.

    A block title row precedes each block; missing values are "—"; with several seeds a
    figure reads "mean ± std"; a configuration whose records failed is marked in its PEFT
    cell.
    """
    best = table1_best(table)
    leaves = [leaf for _, group in _HTML_GROUPS for leaf in group]
    style = ("<style>table.table1{border-collapse:collapse;font-family:sans-serif;font-size:13px}"
             "table.table1 th,table.table1 td{border:1px solid #bbb;padding:3px 6px;text-align:right}"
             "table.table1 td.text{text-align:left}table.table1 tr.block td{background:#eee;font-weight:bold;"
             "text-align:left}table.table1 tr.failed td{color:#a00}</style>")
    out = [style, '<table class="table1">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>")
    for title, group in _HTML_GROUPS:
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
                text = _fmt(row[column], _HTML_DIGITS[column])
                std = row.get(f"{column}_std")
                if std is not None and not pd.isna(std) and text != "—":
                    text += f" ± {_fmt(std, _HTML_DIGITS[column])}"
                if best.loc[index, column]:
                    text = f"<b>{text}</b>"
                out.append(f"<td>{text}</td>")
            out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# ======================================================================================
# Configurations, per-item data and paired comparisons
# ======================================================================================

_CFG_VALUES = ("efficacy", "latency_mean_s", "latency_median_s", "latency_p90_s", "tokens_mean", "s_per_token",
               "eval_res_gb", "eval_all_gb", "parse_rate")


def _config_table(records: StudyRecords) -> pd.DataFrame:
    """One row per (configuration, task) over the ok evaluations, seeds aggregated."""
    ev = records.evals[records.evals["status"] == "ok"].copy()
    if ev.empty:
        stats = [f"{c}{suffix}" for c in _CFG_VALUES for suffix in ("", "_std", "_min", "_max")]
        return pd.DataFrame(columns=["config", "task", "block", "base", "base_model", "base_size", "method",
                                     "method_key", "rank", "train_task", "trained", "higher_is_better", "scoring",
                                     "models", *stats, "n_seeds", "train_res_gb", "train_all_gb"])
    agg = aggregate_seeds(ev, ["config", "task"], list(_CFG_VALUES))
    ev = ev.assign(_seed=pd.to_numeric(ev["seed"], errors="coerce").fillna(-1)).sort_values(["_seed", "model"])
    meta = ev.groupby(["config", "task"], sort=False).agg(
        block=("block", "first"), base=("base", "first"), base_model=("base_model", "first"),
        base_size=("base_size", "first"), method=("method", "first"), method_key=("method_key", "first"),
        rank=("rank", "first"), train_task=("train_task", "first"), trained=("trained", "first"),
        higher_is_better=("higher_is_better", "first"),
        scoring=("scoring", lambda s: s.iloc[0] if s.nunique() == 1 else "mixed"),
        models=("model", tuple))
    cfg = meta.join(agg.set_index(["config", "task"])).reset_index()
    tr = records.trains[records.trains["status"] == "ok"]
    if len(tr):
        mem = tr.groupby("config")[["train_res_gb", "train_all_gb"]].mean()
        cfg = cfg.merge(mem, left_on="config", right_index=True, how="left")
    else:
        cfg["train_res_gb"] = math.nan
        cfg["train_all_gb"] = math.nan
    order = _sort_key(cfg)
    cfg = cfg.iloc[np.lexsort(order[["n", "s", "r", "m", "b"]].to_numpy().T)].reset_index(drop=True)
    return cfg


def _letter_codes(values: pd.Series) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(scoring.ARC_LETTERS)}
    return np.array([lookup.get(v, -1) if isinstance(v, str) else -1 for v in values], dtype=int)


def _ref_abs_diff(gold: Any, parsed: Any) -> float:
    _, diff = scoring._ref_math_item(gold, "" if parsed is None else str(parsed))
    return math.nan if diff is None else float(diff)


def _prepare(frame: pd.DataFrame | None, task: str, scoring_name: str, measure: str) -> pd.DataFrame | None:
    """Per-item columns for a comparison: ``id``, ``v`` (and ARC ``g``/``p`` letter codes).

    None when the frame does not hold the per-item data the measure needs.
    """
    if frame is None or "id" not in frame.columns:
        return None
    if measure == "latency":
        if "latency_s" not in frame.columns or not frame["latency_s"].notna().any():
            return None
        return pd.DataFrame({"id": frame["id"].astype(str), "v": frame["latency_s"].astype(float)})
    score_col = "ref_score" if scoring_name == "reference" else "score"
    if score_col not in frame.columns or not frame[score_col].notna().any():
        return None
    out = pd.DataFrame({"id": frame["id"].astype(str)})
    if task == "squad_v2":
        out["v"] = frame[score_col].astype(float) * 100.0
    elif task == "openmath":
        if scoring_name == "reference":
            if not {"gold", "ref_parsed"} <= set(frame.columns):
                return None
            out["v"] = [_ref_abs_diff(g, p) for g, p in zip(frame["gold"], frame["ref_parsed"])]
        else:
            if not {"abs_diff", "parsed_ok"} <= set(frame.columns):
                return None
            out["v"] = frame["abs_diff"].astype(float).where(frame["parsed_ok"].astype(bool))
    elif task == "arc":
        if scoring_name == "reference":
            if not {"gold", "ref_parsed"} <= set(frame.columns):
                return None
            out["g"] = _letter_codes(frame["gold"].map(lambda g: scoring._ref_arc_gold(g)))
            out["p"] = _letter_codes(frame["ref_parsed"].map(lambda p: p or None))
        else:
            if not {"gold_letter", "parsed", "parsed_ok"} <= set(frame.columns):
                return None
            out["g"] = _letter_codes(frame["gold_letter"])
            out["p"] = _letter_codes(frame["parsed"].where(frame["parsed_ok"].astype(bool)))
        out["v"] = frame[score_col].astype(float)
    else:
        return None
    return out


def _macro_f1(drop_unparsed: bool):
    """Macro-F1 over A-D from letter codes. Reference: only pairs with gold and prediction in
    A-D count; corrected: an unparsed prediction is a miss of its gold class."""

    def metric(frame: pd.DataFrame) -> float:
        g, p = frame["g"].to_numpy(), frame["p"].to_numpy()
        keep = (g >= 0) & (p >= 0) if drop_unparsed else (g >= 0)
        g, p = g[keep], p[keep]
        f1s = []
        for c in range(4):
            tp = np.sum((g == c) & (p == c))
            fp = np.sum((p == c) & (g != c))
            fn = np.sum((g == c) & (p != c))
            prec = tp / (tp + fp) if tp + fp else 0.0
            rec = tp / (tp + fn) if tp + fn else 0.0
            f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
        return float(np.mean(f1s))

    return metric


def _mean_v(frame: pd.DataFrame) -> float:
    values = frame["v"].to_numpy(dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


class _Analysis:
    """Configurations of one study and cached paired comparisons between them."""

    def __init__(self, records: StudyRecords, *, n_boot: int, seed: int):
        self.records = records
        self.cfg = _config_table(records)
        self.n_boot = n_boot
        self.seed = seed
        self._cache: dict[tuple, dict] = {}

    # --- selections ---------------------------------------------------------------
    def rows(self, task: str | None = None, **where: Any) -> pd.DataFrame:
        frame = self.cfg if task is None else self.cfg[self.cfg["task"] == task]
        for key, value in where.items():
            if isinstance(value, (list, tuple, set)):
                frame = frame[frame[key].isin(list(value))]
            else:
                frame = frame[frame[key] == value]
        return frame

    def in_domain(self) -> pd.DataFrame:
        cfg = self.cfg
        return cfg[cfg["trained"].astype(bool) & (cfg["task"] == cfg["train_task"])]

    def row(self, config: str, task: str) -> pd.Series | None:
        hit = self.cfg[(self.cfg["config"] == config) & (self.cfg["task"] == task)]
        return hit.iloc[0] if len(hit) else None

    @staticmethod
    def best(frame: pd.DataFrame, column: str, higher: bool, tiebreak: str | None = None) -> pd.Series | None:
        """The row with the best ``column``; equal values are decided by the lowest ``tiebreak``."""
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().sum() == 0:
            return None
        target = values.max() if higher else values.min()
        tied = frame[values == target]
        if tiebreak and len(tied) > 1:
            order = pd.to_numeric(tied[tiebreak], errors="coerce")
            if order.notna().any():
                return tied.loc[order.idxmin()]
        return tied.iloc[0]

    def untuned(self, base: str) -> str | None:
        hit = self.cfg[(self.cfg["method_key"] == "base") & (self.cfg["base"] == base)]
        return hit["config"].iloc[0] if len(hit) else None

    # --- paired comparisons ------------------------------------------------------
    def _stacked(self, models_a: tuple, models_b: tuple, task: str, scoring_name: str, measure: str):
        n = max(len(models_a), len(models_b))
        frames_a, frames_b = [], []
        for k in range(n):
            for models, frames in ((models_a, frames_a), (models_b, frames_b)):
                prepared = _prepare(self.records.items(models[k % len(models)], task), task, scoring_name,
                                    measure)
                if prepared is None:
                    return None
                prepared["id"] = f"{k}|" + prepared["id"]
                frames.append(prepared)
        return pd.concat(frames_a, ignore_index=True), pd.concat(frames_b, ignore_index=True)

    def _interval(self, ra: pd.Series, rb: pd.Series, task: str, measure: str, higher: bool) -> dict | str:
        if measure == "efficacy" and ra["scoring"] != rb["scoring"]:
            return "different scorings: no interval"
        stacked = self._stacked(ra["models"], rb["models"], task, ra["scoring"], measure)
        if stacked is None:
            return NO_ITEMS if measure == "efficacy" else "no per-item latency: no interval"
        a, b = stacked
        try:
            if measure == "latency" or task == "squad_v2":
                joined = a[["id", "v"]].merge(b[["id", "v"]], on="id", suffixes=("_a", "_b"))
                return paired_bootstrap_diff(joined["v_a"], joined["v_b"], n_boot=self.n_boot, seed=self.seed,
                                             higher_is_better=higher)
            metric = _mean_v if task == "openmath" else _macro_f1(drop_unparsed=ra["scoring"] == "reference")
            return paired_bootstrap_metric(a, b, metric, key="id", n_boot=self.n_boot, seed=self.seed,
                                           higher_is_better=higher)
        except ValueError as exc:
            return f"no shared items: no interval ({exc})"

    def compare(self, a: str, b: str, task: str, measure: str = "efficacy") -> dict:
        """Configuration ``a`` against ``b`` on ``task``: efficacy or mean batch-1 latency.

        ``diff`` = a - b (seed means), ``rel_diff`` = diff / |b|; ``better`` is "a", "b" or
        "tie" (from the paired interval when there is one, else from the point difference).
        """
        key = (a, b, task, measure)
        if key in self._cache:
            return self._cache[key]
        ra, rb = self.row(a, task), self.row(b, task)
        column = "efficacy" if measure == "efficacy" else "latency_mean_s"
        higher = bool(ra["higher_is_better"]) if measure == "efficacy" else False
        va, vb = _num(ra[column]), _num(rb[column])
        diff = va - vb
        rel = diff / abs(vb) if vb and not math.isnan(vb) else math.nan
        result = {"task": task, "measure": measure, "a": a, "b": b, "a_value": va, "b_value": vb,
                  "a_std": _num(ra.get(f"{column}_std")), "b_std": _num(rb.get(f"{column}_std")),
                  "a_seeds": int(ra["n_seeds"]), "b_seeds": int(rb["n_seeds"]), "diff": diff, "rel_diff": rel,
                  "ci_low": math.nan, "ci_high": math.nan, "n_items": math.nan}
        interval = self._interval(ra, rb, task, measure, higher)
        if isinstance(interval, dict):
            result.update(ci_low=interval["low"], ci_high=interval["high"], n_items=interval["n"],
                          better=interval["better"], note="paired bootstrap 95 % interval")
        else:
            gain = diff if higher else -diff
            better = "tie" if (math.isnan(gain) or gain == 0) else ("a" if gain > 0 else "b")
            result.update(better=better, note=interval)
        self._cache[key] = result
        return result

    @staticmethod
    def material(cmp: dict, side: str) -> bool:
        """``side`` wins ``cmp`` by more than MATERIAL (and its interval, if any, excludes zero)."""
        rel = cmp["rel_diff"]
        return cmp["better"] == side and (math.isnan(rel) or abs(rel) > MATERIAL)


def _verdict(cmp: dict, a_word: str, b_word: str) -> str:
    return {"a": a_word, "b": b_word}.get(cmp["better"], "tie")


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:+.1f} %"


def _interval_text(cmp: dict) -> str:
    if math.isnan(cmp["ci_low"]):
        return cmp["note"]
    return f"95 % CI [{cmp['ci_low']:.4g}, {cmp['ci_high']:.4g}]"


def _comparisons(rows: list[dict]) -> pd.DataFrame:
    columns = ["task", "measure", "a", "b", "a_value", "b_value", "a_std", "b_std", "a_seeds", "b_seeds", "diff",
               "rel_diff", "ci_low", "ci_high", "n_items", "better", "note"]
    return pd.DataFrame(rows, columns=columns)


def _share(values: pd.Series, higher: bool) -> pd.Series:
    """Each value as a share of the best (1 = the best), for ratio-scale figures."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    if v.notna().sum() == 0:
        return v
    if higher:
        best = v.max()
        return v / best if best > 0 else pd.Series(np.where(v == best, 1.0, 0.0), index=v.index)
    best = v.min()
    if best > 0:
        return best / v
    return pd.Series(np.where(v == best, 1.0, 0.0), index=v.index)


def _answer(qid: str, figures: pd.DataFrame, answer: str, conclusion: str | None, agrees: bool | None,
            **extra: Any) -> dict:
    question, reference_answer = next((q, r) for i, q, r in QUESTIONS if i == qid)
    agrees = None if agrees is None else bool(agrees)
    return {"id": qid, "question": question, "figures": figures.reset_index(drop=True), "answer": answer,
            "reference_answer": reference_answer, "agrees": agrees, "conclusion": conclusion, **extra}


def _insufficient(qid: str, why: str, figures: pd.DataFrame | None = None) -> dict:
    return _answer(qid, figures if figures is not None else pd.DataFrame(), f"Insufficient data: {why}.", None,
                   None)


# ======================================================================================
# The nine questions
# ======================================================================================


def _q1(an: _Analysis) -> dict:
    """Q1: best in-domain efficacy–efficiency balance.

    In-domain = each trained configuration evaluated on its own training task. Per training
    task, every figure becomes a share of the best configuration's (1 = best; efficacy
    x/max or min/x by direction, latency min/x, training memory min/x): efficiency = mean
    of the latency share and the training-memory share (latency only when training memory
    was not measured); balance = mean of the efficacy share and the efficiency share. The
    configuration with the highest balance wins its training task; every other
    configuration's efficacy is compared with the winner's (paired 95 % interval).
    Agrees with the study when full FT wins every training task.
    """
    dom = an.in_domain()
    if dom.empty:
        return _insufficient("Q1", "no trained configuration was evaluated on its training task")
    parts, comps, winners, notes = [], [], {}, []
    for train_task, group in dom.groupby("train_task", sort=False):
        g = group.copy()
        g["efficacy_share"] = _share(g["efficacy"], bool(g["higher_is_better"].iloc[0]))
        g["latency_share"] = _share(g["latency_mean_s"], False)
        memory_measured = g["train_res_gb"].notna().all()
        g["memory_share"] = _share(g["train_res_gb"], False) if memory_measured else math.nan
        g["efficiency_share"] = g[["latency_share", "memory_share"]].mean(axis=1, skipna=True)
        g["balance"] = g[["efficacy_share", "efficiency_share"]].mean(axis=1, skipna=True)
        if not memory_measured:
            notes.append(f"{TASK_LABELS.get(train_task, train_task)}: training memory not measured, efficiency = "
                         "latency only")
        if g["balance"].notna().sum() == 0:
            continue
        win = g.loc[g["balance"].idxmax()]
        winners[train_task] = win
        g["best"] = g["config"] == win["config"]
        for _, other in g[~g["best"]].iterrows():
            comps.append(an.compare(win["config"], other["config"], train_task))
        parts.append(g)
    if not winners:
        return _insufficient("Q1", "no in-domain efficacy or latency was measured")
    figures = pd.concat(parts)[["train_task", "config", "method", "rank", "efficacy", "latency_mean_s",
                                "train_res_gb", "efficacy_share", "latency_share", "memory_share",
                                "efficiency_share", "balance", "best"]]
    comparisons = _comparisons(comps)
    if len(comparisons):
        cmp = comparisons.rename(columns={"b": "config", "diff": "winner_minus_config", "better": "winner_vs_config"})
        figures = figures.merge(cmp[["config", "task", "winner_minus_config", "ci_low", "ci_high",
                                     "winner_vs_config", "note"]].rename(columns={"task": "train_task"}),
                                on=["train_task", "config"], how="left")
    texts = []
    for task, win in winners.items():
        rest = figures[(figures["train_task"] == task) & ~figures["best"]].sort_values("balance", ascending=False)
        runner = f"; next {rest['config'].iloc[0]} ({rest['balance'].iloc[0]:.2f})" if len(rest) else ""
        texts.append(f"{TASK_LABELS.get(task, task)}: {win['config']} (balance {win['balance']:.2f}{runner})")
    methods = {task: win["method_key"] for task, win in winners.items()}
    conclusion = (next(iter(methods.values())) if len(set(methods.values())) == 1
                  else "; ".join(f"{t}: {m}" for t, m in methods.items()))
    answer = "Best in-domain balance: " + "; ".join(texts) + "." + (f" ({'; '.join(notes)}.)" if notes else "")
    return _answer("Q1", figures, answer, conclusion, all(m == "full" for m in methods.values()),
                   comparisons=comparisons)


def _q2(an: _Analysis) -> dict:
    """Q2: do adapters approach or beat full FT, and the larger base?

    Per training task: the best adapter configuration in-domain (best efficacy among LoRA,
    DoRA, VeRA; equal efficacy goes to the faster) against (a) full FT of the same base on the same training task and (b) the
    largest untuned base model (when it is larger than the trained base), all on the
    training task. The adapter "beats" when it is better (interval excluding zero, or the
    point difference when there is no interval), "approaches" when the interval contains
    zero or the difference is within MATERIAL (2 %), else it "falls short". Agrees with the
    study ("no, neither") when it falls short of both in every training task.
    """
    dom = an.in_domain()
    untuned = an.cfg[an.cfg["method_key"] == "base"]
    rows, comps = [], []
    for (train_task, _base), group in dom.groupby(["train_task", "base"], sort=False):
        adapters = group[group["method_key"].isin(ADAPTERS)]
        higher = bool(group["higher_is_better"].iloc[0])
        best = an.best(adapters, "efficacy", higher, tiebreak="latency_mean_s")
        if best is None:
            continue
        targets = []
        full = group[group["method_key"] == "full"]
        if len(full):
            targets.append(("full FT", full["config"].iloc[0]))
        larger = untuned[(untuned["task"] == train_task) & (untuned["base_size"] > best["base_size"])]
        if len(larger):
            targets.append(("larger base", larger.loc[larger["base_size"].idxmax(), "config"]))
        for target, config in targets:
            cmp = an.compare(best["config"], config, train_task)
            comps.append(cmp)
            if an.material(cmp, "a") or (cmp["better"] == "a" and math.isnan(cmp["ci_low"])):
                outcome = "beats"
            elif cmp["better"] == "b" and an.material(cmp, "b"):
                outcome = "falls short"
            else:
                outcome = "approaches"
            rows.append({"train_task": train_task, "against": target, "adapter": best["config"],
                         "adapter_efficacy": cmp["a_value"], "other": config, "other_efficacy": cmp["b_value"],
                         "diff": cmp["diff"], "rel_diff": cmp["rel_diff"], "ci_low": cmp["ci_low"],
                         "ci_high": cmp["ci_high"], "outcome": outcome, "note": cmp["note"]})
    figures = pd.DataFrame(rows)
    if figures.empty:
        return _insufficient("Q2", "no adapter configuration with a full FT run or a larger untuned base to "
                                   "compare with")
    verdicts = {}
    for target in ("full FT", "larger base"):
        hit = figures[figures["against"] == target]
        if len(hit):
            verdicts[target] = "yes" if (hit["outcome"] != "falls short").any() else "no"
    texts = [f"{TASK_LABELS.get(r.train_task, r.train_task)}: {r.adapter} {r.outcome}"
             f"{' of' if r.outcome == 'falls short' else ''} {r.other} "
             f"({_pct(r.rel_diff)}; {r.note if math.isnan(r.ci_low) else f'CI [{r.ci_low:.4g}, {r.ci_high:.4g}]'})"
             for r in figures.itertuples()]
    if all(v == "no" for v in verdicts.values()):
        head = "No: the best adapter falls short of " + " and of the ".join(verdicts)
        conclusion = "no, neither" if len(verdicts) == 2 else f"no ({', '.join(verdicts)} only)"
    else:
        conclusion = "; ".join(f"{'yes' if v == 'yes' else 'no'} vs {t}" for t, v in verdicts.items())
        head = conclusion[0].upper() + conclusion[1:]
    agrees = (all(v == "no" for v in verdicts.values()) if len(verdicts) == 2 else
              (False if any(v == "yes" for v in verdicts.values()) else None))
    return _answer("Q2", figures, f"{head}. " + "; ".join(texts) + ".", conclusion, agrees,
                   comparisons=_comparisons(comps))


def _q3(an: _Analysis) -> dict:
    """Q3: does rank change the efficacy–latency–memory trade-off?

    For each (base, training task, method) trained at several ranks, each rank against the
    next lower one: relative change (higher rank minus lower, over the lower) of in-domain
    efficacy and in-domain mean latency (paired intervals over items), evaluation memory
    (maximum over tasks) and training memory (point values). A change is material when it
    exceeds MATERIAL (2 %) and, where an interval exists, the interval excludes zero.
    Agrees with the study ("not materially") when no change is material.
    """
    dom = an.in_domain()
    dom = dom[dom["method_key"].isin(ADAPTERS)]
    eval_mem = an.cfg.groupby("config")["eval_res_gb"].max()
    rows = []
    for (base, train_task, method), group in dom.groupby(["base", "train_task", "method_key"], sort=False):
        group = group.sort_values("rank")
        if len(group) < 2:
            continue
        pairs = list(zip(group.iloc[:-1].itertuples(), group.iloc[1:].itertuples()))
        for low, high in pairs:
            common = {"train_task": train_task, "method": METHOD_LABELS[method], "base": base,
                      "rank_low": int(low.rank), "rank_high": int(high.rank)}
            tokens_rel = (high.tokens_mean - low.tokens_mean) / low.tokens_mean if low.tokens_mean else math.nan
            for measure in ("efficacy", "latency"):
                cmp = an.compare(high.config, low.config, train_task, measure)
                material = an.material(cmp, "a") or an.material(cmp, "b")
                rows.append({**common, "measure": f"in-domain {measure}", "low": cmp["b_value"],
                             "high": cmp["a_value"], "rel_change": cmp["rel_diff"], "ci_low": cmp["ci_low"],
                             "ci_high": cmp["ci_high"], "material": material,
                             "tokens_rel_change": tokens_rel if measure == "latency" else math.nan,
                             "note": cmp["note"]})
            for measure, lo, hi in (("eval memory", eval_mem.get(low.config), eval_mem.get(high.config)),
                                    ("training memory", low.train_res_gb, high.train_res_gb)):
                lo, hi = _num(lo), _num(hi)
                rel = (hi - lo) / abs(lo) if lo and not math.isnan(lo) else math.nan
                rows.append({**common, "measure": measure, "low": lo, "high": hi, "rel_change": rel,
                             "ci_low": math.nan, "ci_high": math.nan,
                             "material": bool(not math.isnan(rel) and abs(rel) > MATERIAL),
                             "tokens_rel_change": math.nan,
                             "note": "not measured" if math.isnan(rel) else "point values"})
    figures = pd.DataFrame(rows)
    if figures.empty:
        return _insufficient("Q3", "no method was trained at two or more ranks")
    measured = figures[figures["rel_change"].notna()]
    summary = []
    for measure, group in measured.groupby("measure", sort=False):
        worst = group.loc[group["rel_change"].abs().idxmax()]
        summary.append(f"{measure}: largest change {_pct(worst['rel_change'])} ({worst['method']} "
                       f"r{worst['rank_low']}→r{worst['rank_high']}, {TASK_LABELS.get(worst['train_task'])}"
                       f"{', material' if worst['material'] else ''})")
    unmeasured = sorted(set(figures["measure"]) - set(measured["measure"]))
    material = figures[figures["material"]]
    if material.empty:
        conclusion = "not materially"
        head = f"Not materially: no change exceeds {MATERIAL:.0%} with an interval excluding zero"
    else:
        kinds = ", ".join(dict.fromkeys(material["measure"]))
        conclusion = f"yes ({kinds})"
        head = f"Yes, in {kinds}: {len(material)} of {len(figures)} rank changes are material"
    tail = f" Not measured: {', '.join(unmeasured)}." if unmeasured else ""
    latency = material[material["measure"] == "in-domain latency"]
    if len(latency):
        signs = set(np.sign(latency["rel_change"]))
        same_tokens = bool((latency["tokens_rel_change"].abs() <= MATERIAL).all())
        if len(signs) > 1 or same_tokens:
            tail += (" The latency changes " + ("go both ways between methods" if len(signs) > 1 else "")
                     + (" and " if len(signs) > 1 and same_tokens else "")
                     + ("come with the same number of generated tokens" if same_tokens else "")
                     + ": with one run per configuration, a run-to-run timing difference cannot be told apart "
                       "from a rank effect (item resampling does not cover it).")
    return _answer("Q3", figures, f"{head}. " + "; ".join(summary) + "." + tail, conclusion, material.empty)


def _q4(an: _Analysis) -> dict:
    """Q4: which method transfers best / forgets least across tasks?

    For each trained configuration and each evaluation task other than its training task:
    the change of efficacy against the untuned model of the same base ("drift"), relative
    and oriented so that + is better, with a paired interval. Per method: mean |relative
    change| (drift), and the number of gains and losses (better / worse than the base,
    material as in MATERIAL). The method with the smallest mean drift forgets least; a
    method "swings both ways" when it has at least one material gain and one material
    loss. Agrees with the study when every adapter method drifts less than full FT and
    full FT swings both ways.
    """
    rows, comps = [], []
    trained = an.cfg[an.cfg["trained"].astype(bool) & (an.cfg["task"] != an.cfg["train_task"])]
    for r in trained.itertuples():
        base_cfg = an.untuned(r.base)
        if base_cfg is None or an.row(base_cfg, r.task) is None:
            continue
        cmp = an.compare(r.config, base_cfg, r.task)
        comps.append(cmp)
        higher = bool(r.higher_is_better)
        oriented = cmp["rel_diff"] if higher else -cmp["rel_diff"]
        direction = "gain" if an.material(cmp, "a") else ("loss" if an.material(cmp, "b") else "no material change")
        rows.append({"config": r.config, "method": r.method, "method_key": r.method_key, "rank": r.rank,
                     "train_task": r.train_task, "task": r.task, "efficacy": cmp["a_value"],
                     "base_efficacy": cmp["b_value"], "change": oriented, "abs_change": abs(oriented),
                     "ci_low": cmp["ci_low"], "ci_high": cmp["ci_high"], "direction": direction,
                     "note": cmp["note"]})
    figures = pd.DataFrame(rows)
    if figures.empty:
        return _insufficient("Q4", "no trained configuration evaluated off its training task next to an untuned "
                                   "model of the same base")
    summary = figures.groupby("method", sort=False).agg(
        method_key=("method_key", "first"), mean_drift=("abs_change", "mean"), max_gain=("change", "max"),
        max_loss=("change", "min"), gains=("direction", lambda d: int((d == "gain").sum())),
        losses=("direction", lambda d: int((d == "loss").sum())), n=("change", "size")).reset_index()
    summary["both_ways"] = (summary["gains"] > 0) & (summary["losses"] > 0)
    summary = summary.sort_values("mean_drift").reset_index(drop=True)
    least = summary.iloc[0]
    parts = [f"{r.method} {100 * r.mean_drift:.1f} % ({r.gains} gains, {r.losses} losses)"
             for r in summary.itertuples()]
    full = summary[summary["method_key"] == "full"]
    adapters = summary[summary["method_key"].isin(ADAPTERS)]
    agrees = None
    conclusion = f"{least['method_key']} drifts least"
    if len(full) and len(adapters):
        adapters_less = bool((adapters["mean_drift"] < full["mean_drift"].iloc[0]).all())
        swings = bool(full["both_ways"].iloc[0])
        agrees = adapters_less and swings
        conclusion = (("adapters drift less" if adapters_less else "adapters do not all drift less") + "; " +
                      ("full FT swings both ways" if swings else "full FT does not swing both ways"))
    answer = (f"Least drift off the training task: {least['method']} (mean |change| vs the untuned base "
              f"{100 * least['mean_drift']:.1f} %). By method: " + "; ".join(parts) + f". "
              f"{conclusion[0].upper()}{conclusion[1:]}.")
    if figures["ci_low"].isna().all():
        answer += f" ({NO_ITEMS}: gains and losses are point differences beyond {MATERIAL:.0%}.)"
    return _answer("Q4", figures, answer, conclusion, agrees, summary=summary, comparisons=_comparisons(comps))


def _q5(an: _Analysis) -> dict:
    """Q5: which configurations minimise inference cost?

    Per configuration: mean batch-1 latency on each task, their sum (seconds to answer one
    item of every task), the sums of median latency and of generated tokens, and the
    evaluation memory (peak resident, maximum over tasks). The cheapest configuration is
    the one with the lowest latency sum and, separately, the lowest evaluation memory; on
    each task the fastest configuration is compared with the runner-up (paired interval on
    per-item latency). Agrees with the study when full FT on the smallest base is cheapest
    on both.
    """
    cfg = an.cfg
    if cfg.empty:
        return _insufficient("Q5", "no evaluation")
    wide = cfg.pivot_table(index="config", columns="task", values="latency_mean_s", aggfunc="first")
    figures = cfg.groupby("config", sort=False).agg(
        method=("method", "first"), method_key=("method_key", "first"), base=("base", "first"),
        base_size=("base_size", "first"), train_task=("train_task", "first"),
        eval_res_gb=("eval_res_gb", "max"), latency_median_sum_s=("latency_median_s", "sum"),
        tokens_mean_sum=("tokens_mean", "sum"), n_tasks=("task", "size")).reset_index()
    tasks = [t for t in TASKS if t in wide.columns]
    for task in tasks:
        figures[LATENCY_COLUMNS[task]] = figures["config"].map(wide[task])
    complete = figures[[LATENCY_COLUMNS[t] for t in tasks]].notna().all(axis=1)
    figures["latency_sum_s"] = figures[[LATENCY_COLUMNS[t] for t in tasks]].sum(axis=1, min_count=1).where(complete)
    fastest = an.best(figures, "latency_sum_s", False)
    smallest = an.best(figures, "eval_res_gb", False)
    figures["fastest"] = figures["config"] == (fastest["config"] if fastest is not None else None)
    figures["least_memory"] = figures["config"] == (smallest["config"] if smallest is not None else None)
    comps = []
    for task in tasks:
        ranked = cfg[cfg["task"] == task].dropna(subset=["latency_mean_s"]).sort_values("latency_mean_s")
        if len(ranked) >= 2:
            comps.append(an.compare(ranked["config"].iloc[0], ranked["config"].iloc[1], task, "latency"))
    figures = figures.sort_values("latency_sum_s").reset_index(drop=True)
    if fastest is None and smallest is None:
        return _insufficient("Q5", "no latency or evaluation memory measured", figures)
    smallest_base = cfg["base_size"].min()
    parts = []
    if fastest is not None:
        parts.append(f"Lowest latency: {fastest['config']} ({fastest['latency_sum_s']:.3g} s summed over "
                     f"{len(tasks)} tasks)")
    if smallest is not None:
        parts.append(f"{'l' if parts else 'L'}owest evaluation memory: {smallest['config']} ({smallest['eval_res_gb']:.3g} GB)")
    per_task = [f"{TASK_LABELS[c['task']]} fastest {c['a']} vs {c['b']}: {c['diff']:+.3g} s "
                f"({_interval_text(c)})" for c in comps]
    winners = [w for w in (fastest, smallest) if w is not None]
    same = len({w["config"] for w in winners}) == 1
    if same:
        w = winners[0]
        conclusion = f"{w['method_key']} on the {'small' if w['base_size'] == smallest_base else 'large'} base"
    else:
        conclusion = "; ".join(f"{k}: {w['method_key']}" for k, w in zip(("latency", "memory"), winners))
    agrees = (len(winners) == 2 and same and winners[0]["method_key"] == "full"
              and winners[0]["base_size"] == smallest_base)
    answer = "; ".join(parts) + ". " + "; ".join(per_task) + ("." if per_task else "")
    return _answer("Q5", figures, answer, conclusion, agrees if len(winners) == 2 else None,
                   comparisons=_comparisons(comps))


CAP_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _q6(an: _Analysis) -> dict:
    """Q6: under a training-memory cap, the best efficacy (and efficacy per GB).

    Caps are the observed quantiles (0, 25, 50, 75, 100 %) of the trained configurations'
    training peak memory (resident). Per training task and cap, among the configurations
    whose training peak fits under the cap: the best in-domain efficacy wins (equal efficacy
    goes to the lower training memory; compared with the runner-up by a paired interval), and efficacy per GB (efficacy as a share of the
    best of that training task, divided by training GB) is shown beside it. Agrees with the
    study when VeRA wins the hardest cap and full FT the loosest in every training task.
    """
    dom = an.in_domain()
    if dom.empty:
        return _insufficient("Q6", "no trained configuration was evaluated on its training task")
    if dom["train_res_gb"].notna().sum() == 0:
        trains = an.records.trains
        imported = len(trains) and trains["imported"].astype(bool).all()
        why = " (the reference study did not publish it)" if imported else ""
        return _insufficient("Q6", f"training memory was not measured{why}, so no cap can be applied")
    memory = dom.drop_duplicates("config")["train_res_gb"].dropna()
    caps: dict[float, float] = {}  # cap (GB) -> the first quantile giving it
    for q in CAP_QUANTILES:
        caps.setdefault(float(np.quantile(memory, q)), q)
    rows, comps, sequences = [], [], {}
    for train_task, group in dom.groupby("train_task", sort=False):
        higher = bool(group["higher_is_better"].iloc[0])
        group = group.assign(share=_share(group["efficacy"], higher))
        group["efficacy_per_gb"] = group["share"] / group["train_res_gb"]
        seq = []
        for cap, q in sorted(caps.items()):
            fit = group[group["train_res_gb"] <= cap * (1 + 1e-9)]
            best = an.best(fit, "efficacy", higher, tiebreak="train_res_gb")
            if best is None:
                continue
            rest = fit[fit["config"] != best["config"]]
            runner = an.best(rest, "efficacy", higher, tiebreak="train_res_gb") if len(rest) else None
            cmp = an.compare(best["config"], runner["config"], train_task) if runner is not None else None
            if cmp:
                comps.append(cmp)
            per_gb = an.best(fit, "efficacy_per_gb", True)
            rows.append({"train_task": train_task, "cap_quantile": q, "cap_gb": cap, "n_fit": len(fit),
                         "winner": best["config"], "method": best["method"], "efficacy": best["efficacy"],
                         "train_res_gb": best["train_res_gb"], "efficacy_per_gb": best["efficacy_per_gb"],
                         "best_per_gb": per_gb["config"] if per_gb is not None else None,
                         "runner_up": runner["config"] if runner is not None else None,
                         "diff": cmp["diff"] if cmp else math.nan, "ci_low": cmp["ci_low"] if cmp else math.nan,
                         "ci_high": cmp["ci_high"] if cmp else math.nan,
                         "vs_runner_up": _verdict(cmp, "winner better", "runner-up better") if cmp else None,
                         "note": cmp["note"] if cmp else None})
            if not seq or seq[-1] != best["method_key"]:
                seq.append(best["method_key"])
        sequences[train_task] = seq
    figures = pd.DataFrame(rows)
    if figures.empty:
        return _insufficient("Q6", "no configuration with a measured training memory")
    texts = [f"{TASK_LABELS.get(t, t)}: " + " → ".join(METHOD_LABELS.get(m, m) for m in seq)
             for t, seq in sequences.items()]
    conclusion = "; ".join(f"{t}: {' > '.join(seq)}" for t, seq in sequences.items())
    agrees = all(seq and seq[0] == "vera" and seq[-1] == "full" for seq in sequences.values())
    answer = ("Best in-domain efficacy from the hardest cap to the loosest (caps "
              + ", ".join(f"{c:.3g}" for c in caps) + " GB): " + "; ".join(texts) + ".")
    return _answer("Q6", figures, answer, conclusion, agrees, comparisons=_comparisons(comps))


def _q7(an: _Analysis) -> dict:
    """Q7: if memory forces adapters, is fine-tuning still worth it?

    Per evaluation task and trained base: the adapter configuration (LoRA, DoRA, VeRA; any
    training task) with the best efficacy on that task (equal efficacy: the faster) against the untuned model of the
    same base, on efficacy and on mean latency (paired intervals). Worth it when the
    adapter is better in efficacy, or faster without being materially worse in efficacy
    (MATERIAL). Agrees with the study when it is worth it on ARC and OpenMath and not on
    SQuAD v2.
    """
    rows, comps = [], []
    adapters = an.cfg[an.cfg["method_key"].isin(ADAPTERS)]
    for (task, base), group in adapters.groupby(["task", "base"], sort=False):
        base_cfg = an.untuned(base)
        if base_cfg is None or an.row(base_cfg, task) is None:
            continue
        best = an.best(group, "efficacy", bool(group["higher_is_better"].iloc[0]), tiebreak="latency_mean_s")
        if best is None:
            continue
        eff = an.compare(best["config"], base_cfg, task)
        lat = an.compare(best["config"], base_cfg, task, "latency")
        comps += [eff, lat]
        better_eff = eff["better"] == "a"
        faster = lat["better"] == "a"
        worse_eff = an.material(eff, "b")
        worth = better_eff or (faster and not worse_eff)
        reasons = [w for w, ok in (("efficacy", better_eff), ("latency", faster)) if ok]
        rows.append({"task": task, "base": base, "adapter": best["config"], "untuned": base_cfg,
                     "efficacy": eff["a_value"], "base_efficacy": eff["b_value"], "efficacy_rel": eff["rel_diff"],
                     "efficacy_ci_low": eff["ci_low"], "efficacy_ci_high": eff["ci_high"],
                     "efficacy_vs_base": _verdict(eff, "better", "worse"), "latency_s": lat["a_value"],
                     "base_latency_s": lat["b_value"], "latency_rel": lat["rel_diff"],
                     "latency_ci_low": lat["ci_low"], "latency_ci_high": lat["ci_high"],
                     "latency_vs_base": _verdict(lat, "faster", "slower"), "worth_it": worth,
                     "reasons": ", ".join(reasons) if worth else "", "note": eff["note"]})
    figures = pd.DataFrame(rows)
    if figures.empty:
        return _insufficient("Q7", "no adapter configuration next to an untuned model of the same base")
    per_task = figures.groupby("task", sort=False)["worth_it"].all()
    texts = [f"{TASK_LABELS.get(r.task, r.task)}: {'yes' if r.worth_it else 'no'} ({r.adapter} vs {r.untuned}: "
             f"efficacy {_pct(r.efficacy_rel)} ({r.efficacy_vs_base}), latency {_pct(r.latency_rel)} "
             f"({r.latency_vs_base}))"
             for r in figures.itertuples()]
    conclusion = "; ".join(f"{t}: {'yes' if v else 'no'}" for t, v in per_task.items())
    expected = {"arc": True, "openmath": True, "squad_v2": False}
    agrees = (all(per_task.get(t) == v for t, v in expected.items()) if set(expected) <= set(per_task.index)
              else None)
    return _answer("Q7", figures, "; ".join(texts) + ".", conclusion, agrees, comparisons=_comparisons(comps))


def _q8(an: _Analysis) -> dict:
    """Q8: with ample memory, does full FT dominate?

    Per training task: full FT against every adapter configuration of the same base,
    in-domain efficacy, paired interval. Full FT dominates when it is better in every
    comparison (a tie is not a win). Agrees with the study ("yes") when it does.
    """
    dom = an.in_domain()
    rows, comps = [], []
    for (train_task, _base), group in dom.groupby(["train_task", "base"], sort=False):
        full = group[group["method_key"] == "full"]
        if full.empty:
            continue
        for other in group[group["method_key"].isin(ADAPTERS)].itertuples():
            cmp = an.compare(full["config"].iloc[0], other.config, train_task)
            comps.append(cmp)
            rows.append({"train_task": train_task, "full": cmp["a"], "adapter": other.config,
                         "full_efficacy": cmp["a_value"], "adapter_efficacy": cmp["b_value"], "diff": cmp["diff"],
                         "rel_diff": cmp["rel_diff"], "ci_low": cmp["ci_low"], "ci_high": cmp["ci_high"],
                         "verdict": _verdict(cmp, "full FT better", "adapter better"), "note": cmp["note"]})
    figures = pd.DataFrame(rows)
    if figures.empty:
        return _insufficient("Q8", "no training task with both full FT and an adapter")
    wins = int((figures["verdict"] == "full FT better").sum())
    ties = int((figures["verdict"] == "tie").sum())
    losses = int((figures["verdict"] == "adapter better").sum())
    dominates = wins == len(figures)
    note = f" ({NO_ITEMS}: point differences)" if figures["ci_low"].isna().all() else ""
    answer = (f"{'Yes' if dominates else 'No'}: full FT wins {wins} of {len(figures)} in-domain comparisons "
              f"({ties} ties, {losses} losses){note}; smallest relative margin "
              f"{_pct(figures['rel_diff'].abs().min()).lstrip('+')}.")
    return _answer("Q8", figures, answer, "yes" if dominates else "no", dominates, comparisons=_comparisons(comps))


def _q9(an: _Analysis) -> dict:
    """Q9: Pareto-optimal configurations over efficacy, latency and memory.

    Per evaluation task: ``stats.pareto_front`` over efficacy (by its direction), mean
    batch-1 latency (lower) and the evaluation peak resident memory on that task (lower).
    Roles: "larger base" (the largest untuned base is on a front), "full FT" (a full FT
    model is on a front), "SQuAD adapter" (an adapter trained on SQuAD v2 is on a front).
    Agrees with the study when all three roles are present.
    """
    parts = []
    for _task, group in an.cfg.groupby("task", sort=False):
        g = group.copy()
        higher = bool(g["higher_is_better"].iloc[0])
        g["pareto"] = pareto_front(g, {"efficacy": higher, "latency_mean_s": False, "eval_res_gb": False})
        parts.append(g)
    if not parts:
        return _insufficient("Q9", "no evaluation")
    figures = pd.concat(parts)[["task", "config", "method", "method_key", "rank", "base", "base_size", "train_task",
                                "efficacy", "latency_mean_s", "eval_res_gb", "pareto"]]
    front = figures[figures["pareto"]]
    untuned = figures[figures["method_key"] == "base"]
    largest = untuned["base_size"].max() if len(untuned) else math.nan
    roles = {
        "larger base": bool(untuned["config"].nunique() > 1 and (front["method_key"].eq("base")
                                                  & front["base_size"].eq(largest)).any()),
        "full FT": bool(front["method_key"].eq("full").any()),
        "SQuAD adapter": bool((front["method_key"].isin(ADAPTERS) & front["train_task"].eq("squad_v2")).any()),
    }
    texts = [f"{TASK_LABELS.get(t, t)}: " + ", ".join(g["config"]) for t, g in front.groupby("task", sort=False)]
    present = [r for r, ok in roles.items() if ok]
    conclusion = ", ".join(present) if present else "none of the study's roles"
    answer = ("Pareto front (efficacy, latency, eval memory) — " + "; ".join(texts) +
              f". Roles on a front: {conclusion}.")
    if figures["eval_res_gb"].isna().all():
        answer += " (Evaluation memory not measured: no front.)"
    return _answer("Q9", figures, answer, conclusion, all(roles.values()) if len(front) else None)


_QUESTION_FUNCTIONS = (_q1, _q2, _q3, _q4, _q5, _q6, _q7, _q8, _q9)


def answer_questions(records: StudyRecords, *, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """The study's nine questions answered from ``records``.

    Each answer: ``id`` ("Q1".."Q9"), ``question``, ``figures`` (a DataFrame of the numbers
    that answer it), ``answer`` (a sentence the figures support), ``reference_answer`` (the
    study's answer), ``agrees`` (True / False, or None when the data cannot answer it — the
    answer then says why) and ``conclusion`` (a short, comparable form of the answer, used
    by ``compare_protocols``); most also carry ``comparisons`` (every paired comparison
    behind the answer, with its interval) and Q4 a per-method ``summary``. Each question's
    computation is documented on its function (``_q1`` .. ``_q9``) and in the figures'
    columns; efficacy is Table 1's metric, differences get paired bootstrap intervals with
    ``n_boot`` replicates and ``seed``.
    """
    an = _Analysis(records, n_boot=n_boot, seed=seed)
    return [fn(an) for fn in _QUESTION_FUNCTIONS]


def question_docs() -> dict[str, str]:
    """Each question's definition, as documented on its computation."""
    return {qid: (fn.__doc__ or "").strip() for (qid, _, _), fn in zip(QUESTIONS, _QUESTION_FUNCTIONS)}


def answers_table(answers: list[dict]) -> pd.DataFrame:
    """The nine answers as one table: id, question, answer, the study's answer, agreement."""
    return pd.DataFrame([{k: a.get(k) for k in ("id", "question", "answer", "reference_answer", "agrees",
                                                 "conclusion")} for a in answers])


def compare_protocols(answers_a: list[dict], answers_b: list[dict], *,
                      labels: tuple[str, str] = ("a", "b")) -> pd.DataFrame:
    """Per question, two sets of answers side by side (e.g. imported reference vs own runs).

    Columns: ``id``, ``question``, ``reference_answer`` (the study's), ``answer_<a>``,
    ``answer_<b>``, ``conclusion_<a>``, ``conclusion_<b>``, ``agrees_<a>``, ``agrees_<b>``
    (each with the study's answer), ``answers_agree`` (the two conclusions are the same;
    None when either is missing) and ``agreement_changed`` (the answer agrees with the study
    in one set and not in the other; None when either could not be decided).
    """
    la, lb = labels
    by_id_b = {a["id"]: a for a in answers_b}
    rows = []
    for qa in answers_a:
        qb = by_id_b.get(qa["id"], {})
        ca, cb = qa.get("conclusion"), qb.get("conclusion")
        ga, gb = qa.get("agrees"), qb.get("agrees")
        rows.append({
            "id": qa["id"], "question": qa["question"], "reference_answer": qa["reference_answer"],
            f"answer_{la}": qa.get("answer"), f"answer_{lb}": qb.get("answer"),
            f"conclusion_{la}": ca, f"conclusion_{lb}": cb, f"agrees_{la}": ga, f"agrees_{lb}": gb,
            "answers_agree": None if ca is None or cb is None else ca == cb,
            "agreement_changed": None if ga is None or gb is None else ga != gb,
        })
    return pd.DataFrame(rows)


__all__ = [
    "QUESTIONS", "TABLE1_COLUMNS", "StudyRecords", "answer_questions", "answers_table", "compare_protocols",
    "load_study", "question_docs", "table1", "table1_best", "table1_html",
]
