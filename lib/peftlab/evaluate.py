"""Evaluate one model (an untuned base or a training run's merged model) on tasks.

Per task it writes `items-<task>.parquet` (one row per item: prompt, reply, parsed answer,
score, tokens, seconds) and then `eval-<task>.json` (metrics under both the corrected and
the reference scoring, latency, throughput, memory, provenance), each atomically.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from . import scoring
from .config import EVAL_IDENTITY_KEYS, ConfigError, config_hash, resolve_path
from .data import load_rows
from .generate import generate_batched, render_prompts, time_single
from .memory import PhaseMemory
from .models import load_model
from .results import ResultError, failure, read_record, reusable_record, run_metadata, write_json, write_parquet
from .tasks import eval_messages, gold

LATENCY_SEED = 0  # every model is timed on the same items


def model_identity(*, base_model: str, run_dir: str | None) -> dict:
    """What is evaluated: the untuned base, or the merged model of a finished training run."""
    if not run_dir:
        return {"label": f"{base_model} (untuned)", "base_model": base_model, "trained": False, "run": None,
                "method": "base", "rank": None, "train_task": None, "seed": None, "train_hash": None,
                "model_path": base_model}
    run_path = resolve_path(run_dir)
    try:
        train = read_record(run_path / "train.json")
    except ResultError as exc:
        raise ConfigError(f"run_dir {run_dir!r} has no usable training record: {exc}; run notebooks/train.ipynb "
                          "with out_dir set to it first, or set run_dir to '' to evaluate the untuned base_model") from exc
    cfg = train["config"]
    return {"label": run_path.name, "base_model": cfg["base_model"], "trained": True, "run": run_path.name,
            "method": cfg["method"], "rank": None if cfg["method"] == "full" else cfg["rank"],
            "train_task": cfg["train_task"], "seed": cfg["seed"], "train_hash": train["config_hash"],
            "train_status": train["status"], "model_path": str(run_path / "model")}


def latency_subset(n_items: int, n_latency: int) -> list[int]:
    rng = np.random.default_rng(LATENCY_SEED)
    return sorted(rng.choice(n_items, size=min(n_latency, n_items), replace=False).tolist())


def _latency_summary(timed: list[dict]) -> dict:
    if not timed:
        return {"n": 0}
    seconds = np.array([t["seconds"] for t in timed])
    tokens = np.array([t["tokens_generated"] for t in timed])
    return {"n": len(timed), "batch_size": 1, "mean_s": float(seconds.mean()),
            "median_s": float(np.median(seconds)), "p90_s": float(np.percentile(seconds, 90)),
            "tokens_mean": float(tokens.mean()), "tokens_median": float(np.median(tokens)),
            "s_per_token": float(seconds.sum() / max(tokens.sum(), 1)),
            "hit_max_new_tokens": None}


def _gold_text(task: str, value):
    if task == "squad_v2":
        return list(value)
    return str(value)


def run_evaluation(*, config: Mapping, run_dir: str | None = None) -> dict[str, dict]:
    """Evaluate `config['base_model']` (or the merged model of `run_dir`) on config['eval_tasks'].
    Results go to config['out_dir']; a task already finished with the same config is skipped."""
    config = dict(config)
    out_dir = Path(config["out_dir"])
    identity = model_identity(base_model=config["base_model"], run_dir=run_dir)
    tasks = config["eval_tasks"]
    hashes = {t: config_hash({**config, "task": t, "model": identity.get("train_hash") or identity["base_model"]},
                             EVAL_IDENTITY_KEYS + ("task", "model")) for t in tasks}
    records, todo = {}, []
    for task in tasks:
        done = reusable_record(out_dir / f"eval-{task}.json", hashes[task], config["force"], "evaluation")
        if done:
            print(f"{out_dir / f'eval-{task}.json'} is finished; not redone (set force=true to redo)")
            records[task] = done
        else:
            todo.append(task)
    if not todo:
        return records
    if identity.get("train_status") == "failed":
        for task in todo:
            records[task] = _failed(config, identity, task, hashes[task],
                                    RuntimeError(f"training run {identity['run']} failed; nothing to evaluate"),
                                    "upstream", out_dir)
        return records

    # Every task's data is read and validated before the model is loaded.
    rows = {task: load_rows(task=task, split="test", source=config["data_source"], n=config["n_eval"])
            for task in todo}
    started = time.perf_counter()
    model, tokenizer, info = load_model(base_model=identity["model_path"], dtype=config["dtype"],
                                        device=config["device"])
    load_s = time.perf_counter() - started
    errors = []
    for task in todo:
        try:
            records[task] = _evaluate_task(model, tokenizer, info, config, identity, task, rows[task],
                                           hashes[task], out_dir, load_s)
        except Exception as error:  # recorded; the other tasks still run
            records[task] = _failed(config, identity, task, hashes[task], error, "evaluate", out_dir,
                                    device=info.device)
            errors.append(error)
    if errors:
        raise errors[0]
    return records


def _failed(config, identity, task, chash, error, phase, out_dir, device: str | None = None) -> dict:
    from .train import is_out_of_memory

    record = {"kind": "eval", "status": "failed", "task": task, "model": identity, "protocol": config["protocol"],
              "config": config, "config_hash": chash,
              "error": {**failure(error, phase), "traceback": traceback.format_exc(limit=20)},
              "meta": run_metadata(device)}
    if is_out_of_memory(error):
        record["error"]["memory_so_far"] = PhaseMemory(device or "cpu").snapshot()
    write_json(out_dir / f"eval-{task}.json", record)
    return record


def _evaluate_task(model, tokenizer, info, config, identity, task, rows, chash, out_dir: Path, load_s: float) -> dict:
    if config.get("fault") == "oom@evaluate":  # testing only: prove an out-of-memory error is recorded
        import torch

        raise torch.OutOfMemoryError(f"injected fault: out of memory while evaluating {task}")
    prompts = render_prompts(tokenizer, [eval_messages(task, row, config["protocol"]) for row in rows])
    golds = [gold(task, row) for row in rows]

    with PhaseMemory(model.device) as memory:
        started = time.perf_counter()
        generated = generate_batched(model, tokenizer, prompts, max_new_tokens=config["max_new_tokens"],
                                     batch_size=config["eval_batch_size"], desc=f"{task} (batch {config['eval_batch_size']})")
        batched_s = time.perf_counter() - started
        subset = latency_subset(len(rows), config["n_latency"])
        timed = time_single(model, tokenizer, [prompts[i] for i in subset],
                            max_new_tokens=config["max_new_tokens"], desc=f"{task} latency (batch 1)")

    replies = [g["reply"] for g in generated]
    scored = scoring.score_items(task, replies, golds)
    items = pd.DataFrame({
        "id": [row["id"] for row in rows], "task": task, "prompt": prompts, "reply": replies,
        "gold": [_gold_text(task, g) for g in golds],
        "tokens_generated": [g["tokens_generated"] for g in generated],
        "seconds": [g["seconds"] for g in generated],
        "hit_max_new_tokens": [g["tokens_generated"] >= config["max_new_tokens"] for g in generated],
    })
    scored = scored.reset_index(drop=True)
    items = pd.concat([items, scored[[c for c in scored.columns if c not in items.columns]]], axis=1)
    items["latency_s"] = np.nan
    items.loc[subset, "latency_s"] = [t["seconds"] for t in timed]
    items["latency_tokens"] = pd.array([pd.NA] * len(items), dtype="Int64")
    items.loc[subset, "latency_tokens"] = [t["tokens_generated"] for t in timed]
    latency = _latency_summary(timed)
    latency["hit_max_new_tokens"] = float(np.mean([t["tokens_generated"] >= config["max_new_tokens"]
                                                   for t in timed])) if timed else None

    metrics = scoring.summarize(task, items)
    write_parquet(out_dir / f"items-{task}.parquet", items)
    record = {
        "kind": "eval", "status": "ok", "task": task, "model": {**info.to_dict(), **identity},
        "protocol": config["protocol"],
        "config": config, "config_hash": chash, "n_items": len(items),
        "metrics": metrics,
        "parse_rate": metrics["corrected"]["parse_rate"],
        "latency": latency,
        "throughput": {"batch_size": config["eval_batch_size"], "items": len(items), "wall_s": batched_s,
                       "items_per_s": len(items) / batched_s if batched_s else None,
                       "tokens_generated_mean": float(items["tokens_generated"].mean()),
                       "hit_max_new_tokens": float(items["hit_max_new_tokens"].mean())},
        "memory": memory.result(),
        "timings": {"load_s": load_s, "generate_s": batched_s},
        "meta": run_metadata(info.device),
    }
    write_json(out_dir / f"eval-{task}.json", record)
    return record
