"""Import the reference study's raw results as this project's own result records.

The reference study published one JSON file per evaluated model (14 fine-tuned Qwen3-0.6B
variants and the untuned 0.6B and 1.7B bases; provenance in
``data/reference-results/README.md``). ``import_reference`` turns each of them into the
records this project writes for its own runs, so that Table 1, the nine questions and every
plot are computed by the same code from either source:

``outputs/reference/runs/<model>/``
    ``eval-<task>.json`` (one per evaluation task), ``items-<task>.parquet`` (one row per
    item) and, for fine-tuned models, ``train.json``. Model folders are named as the
    project names its runs: ``openmath-dora-r256-s0``, ``squad_v2-full-s0``,
    ``base-qwen3-0.6b``.

What the raw files hold, and therefore what the imported records hold:

* metrics: the study's own numbers, with its keys and units (``metrics.reference``); the
  corrected metrics cannot be computed without the replies, which were not published
  (``metrics.corrected`` is null);
* counts: per task the number of items answered correctly (``counts``: for SQuAD v2 the
  exact-match count) and the number of items, checked against the published accuracy (EM
  for SQuAD v2);
* latency: the files' own summary figures, taken as they hold them (mean, median, std and
  sum of the seconds, mean, median, std and sum of the generated tokens, rounded by the
  study to 4 and 2 decimals). Only what they lack is computed from the per-prompt values:
  p90, seconds per token (sum over sum), the share of replies that hit
  ``max_new_tokens`` and the per-token fit. Recomputing a mean from the 4-decimal
  per-prompt values would not give the published figure (0.2932 for 0.2933);
* per prompt: batch-1 latency (seconds per ``generate()`` call, one timing pass) and
  generated-token counts in the items files, ``id`` being the position of the item in the
  study's 200-row test subset; SQuAD v2 items carry the ``cluster`` of their passage
  (from ``data/reference-study/test-squad_v2.parquet``), the others their id;
* memory: one peak reserved / allocated figure per model, measured over the model's whole
  evaluation (all three tasks), so every task's record carries the same figure;
* not published: replies, per-item scores, the evaluated dtype, training memory, training
  curves and timings. They are recorded as null (or left out of the items files) with a
  note, never guessed.

Imports are idempotent: a rerun rewrites the same files atomically. A folder that holds a
record this importer did not write is never overwritten.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peftlab.core.files import ResultError, read_record, write_json, write_parquet
from peftlab.core.hashing import config_hash
from peftlab.core.paths import resolve_path
from peftlab.methods.registry import METHODS, REFERENCE_ALPHA, REFERENCE_LEARNING_RATE
from peftlab.run.evaluate import latency_fit
from peftlab.study.run_names import base_run_name, train_run_name
from peftlab.tasks.registry import TASKS, load_rows

DEFAULT_SOURCE = "data/reference-results"
DEFAULT_OUT = "outputs/reference"

# Provenance of the raw files (data/reference-results/README.md).
SOURCE_REPOSITORY = "https://github.com/albrp97/LLM-Training"
SOURCE_FOLDER = "Testing/metrics/"
SOURCE_COMMIT = "003336523010c3564d79c4f201119a847a6e0db0"
# One file comes from an earlier commit: the version evaluated on 2025-10-01, before a later
# re-run overwrote it. The published table was made from that version.
SOURCE_COMMIT_BY_FILE = {
    "Qwen3-0.6B-openmath_SFT_NoPeft_NoQuant.json": "ed467099f9697db56d9836f79889a45b228fe8dd",
}

# Raw dataset key -> project task.
DATASETS = {
    "test-ai2_arc.parquet": "arc",
    "test-OpenMathInstruct-2.parquet": "openmath",
    "test-squad_v2.parquet": "squad_v2",
}
# The study's metric keys per task (all in its units: ARC macro-F1 0..1, the rest as published).
METRIC_KEYS = {name: TASKS[name].scoring.published for name in DATASETS.values()}
# The study's headline metric per task: (key, higher_is_better).
HEADLINES = {
    name: (TASKS[name].scoring.efficacy["reference"][0], TASKS[name].presentation.higher_is_better)
    for name in DATASETS.values()
}

RAW_METHODS = {"NoPeft": "full", "LoRa": "lora", "DoRa": "dora", "VeRa": "vera"}
RAW_TASKS = {"openmath": "openmath", "squad": "squad_v2"}
_NAME_RE = re.compile(
    r"^(?P<base>Qwen3-[0-9.]+B)"
    r"(?:-(?P<task>openmath|squad)_SFT_(?P<method>NoPeft|LoRa|DoRa|VeRa)(?P<rank>[0-9]*)_NoQuant|_base)\.json$"
)

# The reference protocol's evaluation settings (docs/protocols.md), recorded in each record's config.
MAX_NEW_TOKENS = 1000
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
SEED = 0  # the study ran each configuration once; its random seed was not published

DTYPE_NOTE = (
    "not published by the reference study (bf16 weights on CUDA; its merged adapters were most likely "
    "saved in float32, which would explain their ~2x evaluation memory)"
)
MEMORY_LABEL = "reference study: peak reserved/allocated during evaluation"
MEMORY_NOTE = "one figure per model, measured over its whole evaluation (all three tasks)"
TRAIN_MEMORY_NOTE = "training memory was not published by the reference study"
CORRECTED_NOTE = "not computable: the reference study did not publish its replies"
LATENCY_NOTE = (
    "mean_s, median_s, std_s, sum_s and tokens_mean, tokens_median, tokens_std, tokens_sum as the raw "
    "file holds them; p90_s, hit_max_new_tokens and the fit from its per-prompt values, s_per_token = "
    "sum_s / tokens_sum; one timing pass"
)
# What `counts.correct` counts per task, and the published percentage it must reproduce.
COUNT_METRICS = {name: TASKS[name].scoring.count_metric[0] for name in DATASETS.values()}


def parse_name(file_name: str) -> dict:
    """The model identity encoded in a raw file's name.

    ``Qwen3-0.6B-openmath_SFT_DoRa256_NoQuant.json`` -> base ``Qwen/Qwen3-0.6B``, method
    ``dora``, rank 256, train task ``openmath``, folder ``openmath-dora-r256-s0``;
    ``Qwen3-1.7B_base.json`` -> the untuned base, folder ``base-qwen3-1.7b``.
    """
    match = _NAME_RE.match(file_name)
    if not match:
        raise ResultError(
            f"reference result file {file_name!r} has an unrecognised name; expected "
            "'Qwen3-<size>-<openmath|squad>_SFT_<NoPeft|LoRa|DoRa|VeRa><rank>_NoQuant.json' "
            "or 'Qwen3-<size>_base.json'"
        )
    base_model = f"Qwen/{match['base']}"
    if match["task"] is None:
        return {
            "base_model": base_model,
            "trained": False,
            "method": "base",
            "rank": None,
            "train_task": None,
            "seed": None,
            "folder": base_run_name(base_model),
        }
    method = RAW_METHODS[match["method"]]
    if (method == "full") != (match["rank"] == ""):
        raise ResultError(f"reference result file {file_name!r}: a rank goes with an adapter method only")
    rank = None if method == "full" else int(match["rank"])
    train_task = RAW_TASKS[match["task"]]
    return {
        "base_model": base_model,
        "trained": True,
        "method": method,
        "rank": rank,
        "train_task": train_task,
        "seed": SEED,
        "folder": train_run_name(train_task, method, rank, SEED),
    }


def _need(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise ResultError(f"{where}: missing field {key!r}")
    return mapping[key]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _per_prompt(dataset: dict, key: str, where: str) -> np.ndarray:
    values = _need(_need(dataset, key, where), "per_prompt", f"{where}.{key}")
    if not isinstance(values, list) or not values:
        raise ResultError(f"{where}.{key}.per_prompt: expected a non-empty list")
    return np.array([_number(v, f"{where}.{key}.per_prompt") for v in values], dtype=float)


def _memory(raw: dict, where: str) -> dict:
    """Peak evaluation memory: file level, under `hardware` or `summary`."""
    for section in ("hardware", "summary"):
        block = raw.get(section)
        if isinstance(block, dict) and "peak_vram_reserved_gb" in block:
            return {
                "device": "cuda",
                "peak_reserved_gb": _number(block["peak_vram_reserved_gb"], f"{where}.{section}"),
                "peak_allocated_gb": _number(
                    _need(block, "peak_vram_allocated_gb", f"{where}.{section}"), f"{where}.{section}"
                ),
                "nvml_used_gb": None,
                "label": MEMORY_LABEL,
                "note": MEMORY_NOTE,
            }
    raise ResultError(f"{where}: no peak_vram_reserved_gb under 'hardware' or 'summary'")


def _latency(dataset: dict, seconds: np.ndarray, tokens: np.ndarray, where: str) -> dict:
    """The file's own latency figures as it holds them; what it lacks from its per-prompt values."""
    held_s = _need(dataset, "latency_seconds", where)
    held_t = _need(dataset, "tokens_generated", where)

    def figure(block: dict, key: str, name: str) -> float:
        return _number(_need(block, key, f"{where}.{name}"), f"{where}.{name}.{key}")

    sum_s, tokens_sum = figure(held_s, "sum", "latency_seconds"), figure(held_t, "sum", "tokens_generated")
    mean_s = figure(held_s, "mean", "latency_seconds")
    slope, overhead = latency_fit(seconds, tokens)
    return {
        "n": int(seconds.size),
        "batch_size": 1,
        "mean_s": mean_s,
        "median_s": figure(held_s, "median", "latency_seconds"),
        "p90_s": float(np.percentile(seconds, 90)),
        "std_s": figure(held_s, "std", "latency_seconds"),
        "sum_s": sum_s,
        "tokens_mean": figure(held_t, "mean", "tokens_generated"),
        "tokens_median": figure(held_t, "median", "tokens_generated"),
        "tokens_std": figure(held_t, "std", "tokens_generated"),
        "tokens_sum": tokens_sum,
        "s_per_token": sum_s / max(tokens_sum, 1.0),
        "hit_max_new_tokens": float(np.mean(tokens >= MAX_NEW_TOKENS)),
        "passes": 1,
        "pass_means_s": [mean_s],
        "timing_noise_rel": None,
        "s_per_token_fit": slope,
        "overhead_s_fit": overhead,
        "note": LATENCY_NOTE,
    }


def _counts(task: str, dataset: dict, metrics: dict, n_items: int, where: str) -> dict:
    """Items answered correctly (SQuAD v2: exact matches) out of n, checked against the
    published percentage: accuracy for ARC and OpenMath, EM for SQuAD v2."""
    counts = {}
    for key in ("correct", "incorrect"):
        value = _need(dataset, key, where)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ResultError(f"{where}.{key}: expected a count, got {value!r}")
        counts[key] = value
    if counts["correct"] + counts["incorrect"] != n_items:
        raise ResultError(
            f"{where}: correct {counts['correct']} + incorrect {counts['incorrect']} != total_samples {n_items}"
        )
    metric = COUNT_METRICS[task]
    key = TASKS[task].scoring.count_metric[1]["reference"][0]
    published = metrics[key]
    if abs(100.0 * counts["correct"] / n_items - published) > 0.005 + 1e-9:  # published to 2 decimals
        raise ResultError(
            f"{where}: correct/total_samples = {counts['correct']}/{n_items} does not give the "
            f"published {key} {published}"
        )
    return {"correct": counts["correct"], "incorrect": counts["incorrect"], "n": n_items, "metric": metric}


@functools.lru_cache(maxsize=8)
def _clusters(task: str) -> tuple[str, ...]:
    """The cluster of each item of the study's test subset of a task, in order (the task's
    registry entry decides: SQuAD v2 questions on one passage share one)."""
    return tuple(TASKS[task].scoring.cluster(row) for row in load_rows(task=task, split="test", source="reference"))


def _provenance(file_name: str, raw: dict) -> dict:
    return {
        "source": {
            "repository": SOURCE_REPOSITORY,
            "folder": SOURCE_FOLDER,
            "commit": SOURCE_COMMIT_BY_FILE.get(file_name, SOURCE_COMMIT),
            "file": file_name,
            "model_name": raw.get("model_name"),
            "evaluated_at": raw.get("evaluated_at"),
        },
        "imported_by": "peftlab.analysis.reference.import_reference",
        "device": "cuda",
        "versions": None,
        "git": None,
        "note": "imported from the reference study's published results; versions and git state of the run "
        "were not published",
    }


def _run_config(identity: dict) -> dict:
    """The reference protocol's run settings (docs/protocols.md) for this model."""
    config = {
        "base_model": identity["base_model"],
        "protocol": "reference",
        "method": identity["method"],
        "rank": identity["rank"],
        "train_task": identity["train_task"],
        "seed": identity["seed"],
        "data_source": "reference",
        "device": "cuda",
        "dtype": None,
        "n_eval": 200,
        "max_new_tokens": MAX_NEW_TOKENS,
        "eval_batch_size": 1,
        "n_latency": 200,
        "latency_repeats": 1,
    }
    if identity["trained"]:
        method = identity["method"]
        config |= {
            "learning_rate": REFERENCE_LEARNING_RATE,
            "alpha": REFERENCE_ALPHA if METHODS[method].uses_alpha else None,
            "dropout": 0.1 if method != "full" else None,
            "target_modules": TARGET_MODULES if method != "full" else None,
            "vera_d_initial": 0.1 if "vera_d_initial" in METHODS[method].identity_keys else None,
            "epochs": 1.0,
            "batch_size": 1,
            "grad_accum": 8,
            "max_length": 1024,
            "warmup_ratio": 0.06,
            "weight_decay": 0.0,
            "max_grad_norm": 1.0,
            "gradient_checkpointing": True,
            "n_train": 1000,
        }
    return config


def _model_identity(identity: dict, raw: dict) -> dict:
    label = identity["folder"] if identity["trained"] else f"{identity['base_model']} (untuned)"
    return {
        "label": label,
        "base_model": identity["base_model"],
        "trained": identity["trained"],
        "run": identity["folder"] if identity["trained"] else None,
        "method": identity["method"],
        "rank": identity["rank"],
        "train_task": identity["train_task"],
        "seed": identity["seed"],
        "dtype": None,
        "dtype_note": DTYPE_NOTE,
        "n_params": None,
        "device": "cuda",
        "source_name": raw.get("model_name"),
    }


def _eval_record(
    file_name: str, raw: dict, identity: dict, task: str, dataset: dict, where: str
) -> tuple[dict, pd.DataFrame]:
    metrics_raw = _need(dataset, "metrics", where)
    reference = {
        key: _number(_need(metrics_raw, key, f"{where}.metrics"), f"{where}.metrics.{key}") for key in METRIC_KEYS[task]
    }
    count_key = TASKS[task].scoring.count_metric[1]["reference"][0]
    if count_key not in reference:  # published beside the metrics (ARC, OpenMath: accuracy)
        reference[count_key] = _number(_need(dataset, count_key, where), f"{where}.{count_key}")
    format_rate = _number(_need(dataset, "format_success_rate", where), f"{where}.format_success_rate")
    reference["format_success_rate"] = format_rate
    name, higher = HEADLINES[task]

    seconds = _per_prompt(dataset, "latency_seconds", where)
    tokens = _per_prompt(dataset, "tokens_generated", where)
    n_items = int(_number(_need(dataset, "total_samples", where), f"{where}.total_samples"))
    if not (seconds.size == tokens.size == n_items):
        raise ResultError(f"{where}: {seconds.size} latencies and {tokens.size} token counts for {n_items} items")
    counts = _counts(task, dataset, reference, n_items, where)
    clusters = list(_clusters(task))
    if len(set(clusters)) == len(clusters):  # every item its own cluster: named by its position, as its id
        clusters = [str(i) for i in range(n_items)]
    elif len(clusters) != n_items:
        raise ResultError(
            f"{where}: {n_items} items but the reference {TASKS[task].label} test subset has {len(clusters)} rows"
        )

    config = _run_config(identity)
    record = {
        "kind": "eval",
        "status": "ok",
        "task": task,
        "protocol": "reference",
        "model": _model_identity(identity, raw),
        "config": config,
        "config_hash": config_hash(
            {**config, "task": task, "imported_from": file_name}, tuple(config) + ("task", "imported_from")
        ),
        "n_items": n_items,
        "metrics": {
            "corrected": None,
            "corrected_note": CORRECTED_NOTE,
            "reference": reference,
            "headline": {"name": name, "value": reference[name], "higher_is_better": higher, "scoring": "reference"},
        },
        "counts": counts,
        "parse_rate": format_rate / 100.0,
        "latency": _latency(dataset, seconds, tokens, where),
        "throughput": None,
        "memory": _memory(raw, file_name),
        "timings": None,
        "imported_from": file_name,
        "meta": _provenance(file_name, raw),
    }
    items = pd.DataFrame(
        {
            "id": np.arange(n_items, dtype="int64"),
            "task": task,
            "tokens_generated": tokens.astype("int64"),
            "seconds": seconds,
            "score": np.full(n_items, np.nan),
            "ref_score": np.full(n_items, np.nan),
            "latency_s": seconds,
            "latency_s_pass1": seconds,
            "latency_tokens": pd.array(tokens.astype("int64"), dtype="Int64"),
            "cluster": clusters,
        }
    )
    return record, items


def _train_record(file_name: str, raw: dict, identity: dict) -> dict:
    config = _run_config(identity)
    return {
        "kind": "train",
        "status": "ok",
        "config": config,
        "config_hash": config_hash({**config, "imported_from": file_name}, tuple(config) + ("imported_from",)),
        "run": identity["folder"],
        "learning_rate": config["learning_rate"],
        "alpha": config["alpha"],
        "model": {"base_model": identity["base_model"], "dtype": None, "merged_dtype": None, "dtype_note": DTYPE_NOTE},
        "trainable_params": None,
        "total_params": None,
        "trainable_share": None,
        "adapter_bytes": None,
        "n_rows": 1000,
        "optimizer_steps": None,
        "tokens": None,
        "tokens_per_s": None,
        "loss_curve": [],
        "final_loss": None,
        "memory": None,
        "memory_note": TRAIN_MEMORY_NOTE,
        "timings": None,
        "imported_from": file_name,
        "meta": _provenance(file_name, raw),
    }


def _guard(path: Path) -> None:
    """Refuse to overwrite a record that this importer did not write."""
    record_path = (
        path
        if path.suffix == ".json"
        else path.with_name(path.name.replace("items-", "eval-").replace(".parquet", ".json"))
    )
    if not record_path.is_file():
        return
    try:
        record = read_record(record_path)
    except ResultError:
        return  # damaged: replaced by a fresh import
    if "imported_from" not in record:
        raise ResultError(
            f"{record_path} holds a record that was not imported from the reference study; "
            "import into another folder (out=...)"
        )


def import_file(path: str | Path, *, out: str | Path | None = None) -> list[Path]:
    """Import one raw file; returns the paths written (eval and items per task, train.json)."""
    path = Path(path)
    out_dir = resolve_path(out or DEFAULT_OUT)
    identity = parse_name(path.name)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultError(f"reference result file {path} cannot be read: {exc}") from exc
    datasets = _need(raw, "datasets", path.name)
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        raise ResultError(f"{path.name}: unknown dataset(s) {unknown}; known: {', '.join(DATASETS)}")

    run_dir = out_dir / "runs" / identity["folder"]
    built: list[tuple[Path, Any]] = []
    for key, task in DATASETS.items():
        if key not in datasets:
            continue
        record, items = _eval_record(path.name, raw, identity, task, datasets[key], f"{path.name}: {key}")
        built.append((run_dir / f"items-{task}.parquet", items))
        built.append((run_dir / f"eval-{task}.json", record))
    if identity["trained"]:
        built.append((run_dir / "train.json", _train_record(path.name, raw, identity)))
    for target, _ in built:
        _guard(target)

    written = []
    for target, content in built:  # items before their eval record, as the project writes them
        if isinstance(content, pd.DataFrame):
            written.append(write_parquet(target, content))
        else:
            written.append(write_json(target, content))
    return written


def import_reference(*, source: str | Path | None = None, out: str | Path | None = None) -> list[Path]:
    """Convert every raw reference result file under ``source`` into records under ``out``.

    ``source`` defaults to ``data/reference-results``, ``out`` to ``outputs/reference``
    (relative paths are taken from the repository root). Returns the paths written, in a
    stable order. Raises ResultError naming the file when a raw file is malformed or when a
    target folder holds a record that this importer did not write.
    """
    source_dir = resolve_path(source or DEFAULT_SOURCE)
    files = sorted(source_dir.glob("*.json"))
    if not files:
        raise ResultError(f"no reference result files (*.json) in {source_dir}")
    folders: dict[str, str] = {}
    for file in files:
        folder = parse_name(file.name)["folder"]
        if folder in folders:
            raise ResultError(f"{file.name} and {folders[folder]} map to the same model folder {folder!r}")
        folders[folder] = file.name
    written: list[Path] = []
    for file in files:
        written.extend(import_file(file, out=out))
    return written


__all__ = ["import_reference", "import_file", "parse_name"]
