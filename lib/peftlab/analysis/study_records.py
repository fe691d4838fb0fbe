"""A study's result records, read into tables: one row per evaluation and per training run.

Everything downstream (Table 1, the comparisons, the nine questions, the plots) reads these
tables and the per-item files behind them (``StudyRecords.items``); the same code reads the
project's own runs and the reference study's imported results (``peftlab.analysis.reference``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from peftlab.core.files import ResultError, read_record
from peftlab.core.paths import resolve_path
from peftlab.methods.registry import METHODS as METHOD_REGISTRY
from peftlab.run.records import package_versions
from peftlab.tasks.registry import TASKS as TASK_REGISTRY

# Everything task- or method-specific comes from the registries (peftlab.tasks.registry, peftlab.methods.registry).
TASKS = tuple(TASK_REGISTRY)
TASK_LABELS = {name: task.label for name, task in TASK_REGISTRY.items()}
BLOCKS = {**{name: task.block for name, task in TASK_REGISTRY.items()}, None: "Base models"}
BLOCK_ORDER = (
    *sorted(
        (task.block for task in TASK_REGISTRY.values()),  # the reference study's blocks first
        key=lambda block: not any(t.block == block and t.reference_training_task for t in TASK_REGISTRY.values()),
    ),
    "Base models",
)
METHOD_LABELS = {**{name: method.label for name, method in METHOD_REGISTRY.items()}, "base": "—"}
METHOD_ORDER = (*(method.label for method in METHOD_REGISTRY.values()), "—")
ADAPTERS = tuple(name for name, method in METHOD_REGISTRY.items() if method.trains_adapter)
# Efficacy per task: (Table 1 column, higher_is_better).
EFFICACY = {
    name: (task.presentation.efficacy_column, task.presentation.higher_is_better)
    for name, task in TASK_REGISTRY.items()
}
LATENCY_COLUMNS = {name: task.latency_column for name, task in TASK_REGISTRY.items()}
# Where a protocol's scoring keeps Table 1's metric, and the factor to Table 1's unit.
EFFICACY_KEYS = {
    scoring_name: {name: task.scoring.efficacy[scoring_name] for name, task in TASK_REGISTRY.items()}
    for scoring_name in ("reference", "corrected")
}

# The reference layout: per task its efficacy column (with the task's further columns, e.g.
# OpenMath's parse count beside its AbsDiff, which averages parsed replies only, and its
# accuracies over every item) and its latency.
_MEMORY_COLUMNS = ("train_res_gb", "train_all_gb", "eval_res_gb", "eval_all_gb")
TABLE1_COLUMNS = (
    "block",
    "base",
    "method",
    "rank",
    *_MEMORY_COLUMNS,
    *(
        column
        for task in TASK_REGISTRY.values()
        for column in (
            task.presentation.efficacy_column,
            *(c.name for c in task.presentation.table1_extra),
            task.latency_column,
        )
    ),
)
TABLE1_VALUES = TABLE1_COLUMNS[4:]
# Best per block: True = the maximum, False = the minimum.
TABLE1_BEST = {
    **{c: False for c in _MEMORY_COLUMNS},
    **{
        c: best
        for task in TASK_REGISTRY.values()
        for c, best in (
            (task.presentation.efficacy_column, task.presentation.higher_is_better),
            *((c.name, c.best_is_max) for c in task.presentation.table1_extra),
            (task.latency_column, False),
        )
        if best is not None
    },
}
# The proportion each protocol's scoring records per task, usable from counts alone (the
# imported reference results publish no per-item scores): metric name, key, unit factor.
COUNT_METRICS = {
    scoring_name: {
        name: (task.scoring.count_metric[0], *task.scoring.count_metric[1][scoring_name])
        for name, task in TASK_REGISTRY.items()
    }
    for scoring_name in ("reference", "corrected")
}


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
        return f"{error.get('type')}: {error.get('message')}" + (
            f" (phase {error['phase']})" if error.get("phase") else ""
        )
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
    rank = model.get("rank") if trained and getattr(METHOD_REGISTRY.get(method), "ranked", True) else None
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
        "model": model,
        **ident,
        "task": task,
        "status": record["status"],
        "error": _error_text(record),
        "protocol": record.get("protocol") or (record.get("config") or {}).get("protocol"),
        "scoring": scoring_name,
        "efficacy": efficacy,
        "efficacy_metric": key,
        "higher_is_better": EFFICACY.get(task, (None, True))[1],
        "parse_rate": _num(record.get("parse_rate")) if ok else math.nan,
        "latency_mean_s": _num(latency.get("mean_s")),
        "latency_median_s": _num(latency.get("median_s")),
        "latency_p90_s": _num(latency.get("p90_s")),
        "tokens_mean": _num(latency.get("tokens_mean")),
        "s_per_token": _num(latency.get("s_per_token")),
        "eval_res_gb": res,
        "eval_all_gb": alloc,
        "memory_kind": kind,
        "dtype": model_info.get("dtype"),
        "n_items": record.get("n_items"),
        "imported": "imported_from" in record,
        "eval_batched_gb": _memory_figures(record.get("memory_batched"))[0] if ok else math.nan,
        "timing_noise_rel": _num(latency.get("timing_noise_rel")),
        "cut_rate": _cut_rate(record) if ok else math.nan,
        **(_task_figures(record, task, scoring_name) if ok else {}),
        **(_counts(record, task, scoring_name) if ok else {}),
    }


def _cut_rate(record: dict) -> float:
    """The share of replies that reached max_new_tokens (every item's; else the timed items')."""
    corrected = (record.get("metrics") or {}).get("corrected") or {}
    if corrected.get("cut_rate") is not None:
        return _num(corrected["cut_rate"])
    return _num((record.get("latency") or {}).get("hit_max_new_tokens"))


def _task_figures(record: dict, task: str | None, scoring_name: str) -> dict:
    """A task's further Table 1 figures (its registry entry's table1_figures)."""
    spec = TASK_REGISTRY.get(task)
    return spec.presentation.table1_figures(record, scoring_name) if spec and spec.presentation.table1_figures else {}


def _counts(record: dict, task: str, scoring_name: str | None) -> dict:
    """(correct, n) of the task's proportion metric (COUNT_METRICS), for comparisons from counts."""
    counts = record.get("counts")
    if isinstance(counts, dict) and counts.get("n"):
        return {
            "count_metric": counts.get("metric"),
            "count_correct": _num(counts.get("correct")),
            "count_n": _num(counts.get("n")),
        }
    if scoring_name not in COUNT_METRICS or task not in COUNT_METRICS[scoring_name]:
        return {}
    name, key, factor = COUNT_METRICS[scoring_name][task]
    share = _num(((record.get("metrics") or {}).get(scoring_name) or {}).get(key)) * factor
    n = _num(record.get("n_items"))
    return {
        "count_metric": name,
        "count_correct": round(share * n) if not math.isnan(share * n) else math.nan,
        "count_n": n,
    }


def _train_row(model: str, record: dict) -> dict:
    config = record.get("config") or {}
    ident = _identity(
        {
            "trained": True,
            "method": config.get("method"),
            "rank": config.get("rank"),
            "train_task": config.get("train_task"),
            "seed": config.get("seed"),
            "base_model": config.get("base_model"),
        },
        config,
    )
    ok = record["status"] == "ok"
    res, alloc, kind = _memory_figures(record.get("memory")) if ok else (math.nan, math.nan, None)
    timings = record.get("timings") or {}
    return {
        "model": model,
        **ident,
        "status": record["status"],
        "error": _error_text(record),
        "protocol": config.get("protocol"),
        "train_res_gb": res,
        "train_all_gb": alloc,
        "memory_kind": kind,
        "trainable_params": _num(record.get("trainable_params")),
        "total_params": _num(record.get("total_params")),
        "train_s": _num(timings.get("train_s")),
        "tokens_per_s": _num(record.get("tokens_per_s")),
        "final_loss": _num(record.get("final_loss")),
        "learning_rate": _num(record.get("learning_rate")),
        "alpha": _num(record.get("alpha")),
        "imported": "imported_from" in record,
    }


# The columns that say which configuration a row belongs to.
IDENTITY_COLUMNS = (
    "model",
    "config",
    "block",
    "base",
    "base_model",
    "base_size",
    "method",
    "method_key",
    "rank",
    "seed",
    "train_task",
    "trained",
)
EVAL_COLUMNS = (
    *IDENTITY_COLUMNS,
    "task",
    "status",
    "error",
    "protocol",
    "scoring",
    "efficacy",
    "efficacy_metric",
    "higher_is_better",
    "parse_rate",
    "latency_mean_s",
    "latency_median_s",
    "latency_p90_s",
    "tokens_mean",
    "s_per_token",
    "eval_res_gb",
    "eval_all_gb",
    "memory_kind",
    "dtype",
    "n_items",
    "imported",
    "eval_batched_gb",
    "timing_noise_rel",
    "cut_rate",
    *(
        column for task in TASK_REGISTRY.values() for column in task.presentation.record_figures
    ),  # the tasks' own figures
    "count_metric",
    "count_correct",
    "count_n",
)
TRAIN_COLUMNS = (
    *IDENTITY_COLUMNS,
    "status",
    "error",
    "protocol",
    "train_res_gb",
    "train_all_gb",
    "memory_kind",
    "trainable_params",
    "total_params",
    "train_s",
    "tokens_per_s",
    "final_loss",
    "learning_rate",
    "alpha",
    "imported",
)


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
                    raise ResultError(
                        f"items file {path} is corrupted or truncated ({exc}); delete it and rerun the evaluation"
                    ) from exc
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
    evals = pd.DataFrame(
        [_eval_row(m, r, train_records.get(m)) for (m, _), r in eval_records.items()], columns=list(EVAL_COLUMNS)
    )
    trains = pd.DataFrame([_train_row(m, r) for m, r in train_records.items()], columns=list(TRAIN_COLUMNS))
    for frame in (evals, trains):
        frame["rank"] = pd.array([None if pd.isna(r) else int(r) for r in frame["rank"]], dtype="Int64")
    return StudyRecords(out=out, eval_records=eval_records, train_records=train_records, evals=evals, trains=trains)


def _sort_key(frame: pd.DataFrame) -> pd.DataFrame:
    order = pd.DataFrame(index=frame.index)
    order["b"] = frame["block"].map(lambda b: BLOCK_ORDER.index(b) if b in BLOCK_ORDER else len(BLOCK_ORDER))
    order["m"] = frame["method"].map(lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))
    order["r"] = pd.to_numeric(frame["rank"], errors="coerce").fillna(-1)
    order["s"] = pd.to_numeric(frame["base_size"], errors="coerce").fillna(0)
    order["n"] = frame["base"].astype(str)
    return order


def provenance(*, study_dir: str) -> pd.DataFrame:
    """Versions, commits, devices and evaluation engines of every record, and of the report itself."""
    rows = [
        {
            "what": "report",
            "versions": json.dumps(package_versions()),
            "commit": None,
            "dirty": None,
            "device": None,
            "engine": None,
        }
    ]
    for path in sorted(resolve_path(study_dir).glob("runs/*/*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        meta = record.get("meta") or {}
        git = meta.get("git") or {}
        rows.append(
            {
                "what": f"{path.parent.name}/{path.name}",
                "versions": json.dumps(meta.get("versions")),
                "commit": git.get("commit"),
                "dirty": git.get("dirty"),
                "device": meta.get("device"),
                # the engine that decoded an evaluation's scored replies (eval_backend); none for training
                "engine": (record.get("eval_backend") or {}).get("name"),
            }
        )
    frame = pd.DataFrame(rows)
    return frame.drop_duplicates(subset=["versions", "commit", "dirty", "device", "engine"], keep="first")
