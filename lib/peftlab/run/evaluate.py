"""Evaluate one model (an untuned base or a training run's merged model) on tasks.

Per task it writes `items-<task>.parquet` (one row per item: prompt, reply, parsed answer,
score, tokens, seconds, batch-1 latency, cluster) and then `eval-<task>.json` (metrics under
both the corrected and the reference scoring, latency, throughput, memory, provenance), each
atomically.

Two phases per task, each with its own memory figure:

* batched scoring: every item generated `eval_batch_size` at a time by one engine
  (`eval_backend`: this project's batched decoder or Transformers' continuous batching,
  `run.backends`), named in the record (`memory_batched`);
* batch-1 serving: `n_latency` items timed one `generate()` call each, after a warm-up
  call, in `latency_repeats` passes (pass 1 over all timed items, then pass 2, ...).
  `memory` is this phase's peak: what serving one request costs. Those calls time the
  serving path only; `latency_reply_same` says whether each timed reply is the scored one.

An item's `latency_s` is the mean over the passes (`latency_s_pass<k>` per pass); the
record's latency figures are computed from those means, and the spread of the pass means
says how noisy the timing was. `cluster` names the items that are not independent: SQuAD
questions on one passage share a cluster; every other item is its own.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from peftlab.config import EVAL_IDENTITY_KEYS
from peftlab.core.errors import ConfigError
from peftlab.core.files import ResultError, read_record, reusable_record, write_json, write_parquet
from peftlab.core.hashing import config_hash
from peftlab.core.paths import resolve_path
from peftlab.methods.registry import get_method
from peftlab.models.loading import load_model
from peftlab.run.backends import choose_engine, generate_replies
from peftlab.run.generate import render_prompts, time_single
from peftlab.run.loglik import multiple_choice_loglik
from peftlab.run.memory import PhaseMemory
from peftlab.run.records import failed_eval_record, failure, run_metadata
from peftlab.run.train import is_out_of_memory
from peftlab.tasks import scoring
from peftlab.tasks.registry import eval_messages, get_task, gold, load_rows

LATENCY_SEED = 0  # every model is timed on the same items


def model_identity(*, base_model: str, run_dir: str | None) -> dict:
    """What is evaluated: the untuned base, or the merged model of a finished training run."""
    if not run_dir:
        return {
            "label": f"{base_model} (untuned)",
            "base_model": base_model,
            "trained": False,
            "run": None,
            "method": "base",
            "rank": None,
            "train_task": None,
            "seed": None,
            "train_hash": None,
            "model_path": base_model,
        }
    run_path = resolve_path(run_dir)
    try:
        train = read_record(run_path / "train.json")
    except ResultError as exc:
        raise ConfigError(
            f"run_dir {run_dir!r} has no usable training record: {exc}; run notebooks/train.ipynb "
            "with out_dir set to it first, or set run_dir to '' to evaluate the untuned base_model"
        ) from exc
    cfg = train["config"]
    return {
        "label": run_path.name,
        "base_model": cfg["base_model"],
        "trained": True,
        "run": run_path.name,
        "method": cfg["method"],
        "rank": cfg["rank"] if get_method(cfg["method"]).ranked else None,
        "train_task": cfg["train_task"],
        "seed": cfg["seed"],
        "train_hash": train["config_hash"],
        "train_status": train["status"],
        "model_path": str(run_path / "model"),
    }


def latency_subset(n_items: int, n_latency: int) -> list[int]:
    rng = np.random.default_rng(LATENCY_SEED)
    return sorted(rng.choice(n_items, size=min(n_latency, n_items), replace=False).tolist())


def latency_fit(seconds, tokens) -> tuple[float | None, float | None]:
    """Least-squares fit latency_i = overhead + s_per_token * tokens_i: returns
    (s_per_token, overhead_s), or (None, None) when the token counts do not vary."""
    seconds, tokens = np.asarray(seconds, dtype=float), np.asarray(tokens, dtype=float)
    if tokens.size < 2 or np.ptp(tokens) == 0:
        return None, None
    slope, intercept = np.polyfit(tokens, seconds, 1)
    return float(slope), float(intercept)


def item_cluster(task: str, row: Mapping) -> str:
    """Items of one cluster are not independent (the task's registry entry says which share one:
    SQuAD questions on one passage); otherwise an item is its own cluster."""
    return get_task(task).scoring.cluster(row)


def _latency_summary(pass_seconds: list[np.ndarray], tokens: np.ndarray, max_new_tokens: int) -> dict:
    """Batch-1 latency figures from the per-item means over the passes (`pass_seconds[k][i]`:
    item i's seconds in pass k), plus the passes' own means and their relative spread."""
    if not pass_seconds or not tokens.size:
        return {
            "n": 0,
            "passes": 0,
            "pass_means_s": [],
            "timing_noise_rel": None,
            "s_per_token_fit": None,
            "overhead_s_fit": None,
        }
    seconds = np.mean(pass_seconds, axis=0)
    pass_means = [float(np.mean(p)) for p in pass_seconds]
    mean = float(seconds.mean())
    noise = (max(pass_means) - min(pass_means)) / mean if len(pass_means) > 1 and mean > 0 else None
    slope, overhead = latency_fit(seconds, tokens)
    return {
        "n": int(seconds.size),
        "batch_size": 1,
        "mean_s": mean,
        "median_s": float(np.median(seconds)),
        "p90_s": float(np.percentile(seconds, 90)),
        "tokens_mean": float(tokens.mean()),
        "tokens_median": float(np.median(tokens)),
        "s_per_token": float(seconds.sum() / max(tokens.sum(), 1)),
        "hit_max_new_tokens": float(np.mean(tokens >= max_new_tokens)),
        "passes": len(pass_seconds),
        "pass_means_s": pass_means,
        "timing_noise_rel": noise,
        "s_per_token_fit": slope,
        "overhead_s_fit": overhead,
    }


def time_passes(
    model, tokenizer, prompts: list[str], *, max_new_tokens: int, repeats: int, desc: str = "latency"
) -> list[list[dict]]:
    """`repeats` timing passes over `prompts` (batch 1): pass 1 over every prompt after one
    warm-up call, then pass 2 over every prompt, and so on."""
    if not prompts:
        return []
    return [
        time_single(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            warm_up=k == 0,
            desc=f"{desc}, pass {k + 1}/{repeats}",
        )
        for k in range(repeats)
    ]


def _multiple_choice_items(model, tokenizer, task: str, rows: list[dict], batch_size: int) -> pd.DataFrame:
    """The task's options scored as continuations of its plain prompt (no generation, no answer
    format): per item each option's log-likelihood, the option chosen by the sum (lm-eval's acc)
    and by the sum per character (acc_norm), and whether each is the gold."""
    build = get_task(task).scoring.multiple_choice
    contexts, options = zip(*(build(row) for row in rows))
    results = multiple_choice_loglik(
        model, tokenizer, list(contexts), [list(o) for o in options], batch_size=batch_size, desc=f"{task} (options)"
    )
    golds = [list(row["labels"]).index(str(row["answer"])) for row in rows]
    letters = [[chr(ord("A") + i) for i in range(len(o))] for o in options]
    return pd.DataFrame(
        {
            "ll_options": [r["loglik"] for r in results],
            "ll_choice": [letter[r["choice"]] for letter, r in zip(letters, results)],
            "ll_choice_norm": [letter[r["choice_norm"]] for letter, r in zip(letters, results)],
            "ll_acc": [float(r["choice"] == g) for r, g in zip(results, golds)],
            "ll_acc_norm": [float(r["choice_norm"] == g) for r, g in zip(results, golds)],
        }
    )


def _gold_text(value):
    """A gold as the items file keeps it: a list of answers as a list, anything else as text."""
    return list(value) if isinstance(value, (list, tuple)) else str(value)


# What an evaluation computes beyond its configuration: raised when a record gains measures (2: the
# flexible reading, the format, log-likelihood choice, chance), so older records are evaluated anew.
SCORING_VERSION = 2


def eval_hash(config: Mapping, task: str, identity: Mapping) -> str:
    """The identity of one evaluation: the keys that decide it, the task, the model and what is scored."""
    model = identity.get("train_hash") or identity["base_model"]
    keys = EVAL_IDENTITY_KEYS + ("task", "model", "scoring_version")
    return config_hash({**config, "task": task, "model": model, "scoring_version": SCORING_VERSION}, keys)


def run_evaluation(*, config: Mapping, run_dir: str | None = None) -> dict[str, dict]:
    """Evaluate `config['base_model']` (or the merged model of `run_dir`) on config['eval_tasks'].
    Results go to config['out_dir']; a task already finished with the same config is skipped."""
    config = dict(config)
    out_dir = Path(config["out_dir"])
    identity = model_identity(base_model=config["base_model"], run_dir=run_dir)
    tasks = config["eval_tasks"]
    hashes = {t: eval_hash(config, t, identity) for t in tasks}
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
            records[task] = _failed(
                config,
                identity,
                task,
                hashes[task],
                RuntimeError(f"training run {identity['run']} failed; nothing to evaluate"),
                "upstream",
                out_dir,
            )
        return records

    # Every task's data is read and validated before the model is loaded.
    rows = {task: load_rows(task=task, split="test", source=config["data_source"], n=config["n_eval"]) for task in todo}
    started = time.perf_counter()
    model, tokenizer, info = load_model(
        base_model=identity["model_path"], dtype=config["dtype"], device=config["device"]
    )
    load_s = time.perf_counter() - started
    errors = []
    for task in todo:
        try:
            records[task] = _evaluate_task(
                model, tokenizer, info, config, identity, task, rows[task], hashes[task], out_dir, load_s
            )
        except Exception as error:  # recorded; the other tasks still run
            records[task] = _failed(
                config, identity, task, hashes[task], error, "evaluate", out_dir, device=info.device
            )
            errors.append(error)
    if errors:
        raise errors[0]
    return records


def _failed(config, identity, task, chash, error, phase, out_dir, device: str | None = None) -> dict:
    record = failed_eval_record(
        config,
        task=task,
        identity=identity,
        config_hash=chash,
        error={**failure(error, phase), "traceback": traceback.format_exc(limit=20)},
        meta=run_metadata(device),
    )
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

    # Every item is decoded for scoring by one engine (`eval_backend`); the timed items are then
    # generated again one generate() call each, for latency only, and the items file says whether
    # each timed reply is the scored one.
    subset = latency_subset(len(rows), config["n_latency"])
    batch_size = config["eval_batch_size"]
    engine = choose_engine(config["eval_backend"], model)
    with PhaseMemory(
        model.device, label=f"batched scoring peak (batch {batch_size}) by {engine.name}"
    ) as memory_batched:
        started = time.perf_counter()
        generated = generate_replies(
            engine,
            model,
            tokenizer,
            prompts,
            max_new_tokens=config["max_new_tokens"],
            batch_size=batch_size,
            desc=f"{task} (batch {batch_size}, {engine.name})",
        )
        batched_s = time.perf_counter() - started
    repeats = config.get("latency_repeats", 1)
    serving_label = "batch-1 serving peak" + ("" if subset else " (no item timed: the loaded model only)")
    with PhaseMemory(model.device, label=serving_label) as memory:
        passes = time_passes(
            model,
            tokenizer,
            [prompts[i] for i in subset],
            max_new_tokens=config["max_new_tokens"],
            repeats=repeats,
            desc=f"{task} latency (batch 1)",
        )

    replies = [g["reply"] for g in generated]
    scored = scoring.score_items(task, replies, golds)
    items = pd.DataFrame(
        {
            "id": [row["id"] for row in rows],
            "task": task,
            "prompt": prompts,
            "reply": replies,
            "gold": [_gold_text(g) for g in golds],
            "tokens_generated": [g["tokens_generated"] for g in generated],
            "seconds": [g["seconds"] for g in generated],
            "reply_from": engine.name,
            "hit_max_new_tokens": [g["tokens_generated"] >= config["max_new_tokens"] for g in generated],
        }
    )
    scored = scored.reset_index(drop=True)
    items = pd.concat([items, scored[[c for c in scored.columns if c not in items.columns]]], axis=1)
    pass_seconds = [np.array([t["seconds"] for t in one_pass]) for one_pass in passes]
    tokens = np.array([t["tokens_generated"] for t in passes[0]] if passes else [], dtype=int)
    items["latency_s"] = np.nan
    if passes:
        items.loc[subset, "latency_s"] = np.mean(pass_seconds, axis=0)
    for k in range(repeats):
        items[f"latency_s_pass{k + 1}"] = np.nan
        if passes:
            items.loc[subset, f"latency_s_pass{k + 1}"] = pass_seconds[k]
    items["latency_tokens"] = pd.array([pd.NA] * len(items), dtype="Int64")
    items["latency_reply_same"] = pd.array([pd.NA] * len(items), dtype="boolean")
    if passes:
        items.loc[subset, "latency_tokens"] = tokens
        items.loc[subset, "latency_reply_same"] = [t["reply"] == replies[i] for t, i in zip(passes[0], subset)]
    items["cluster"] = [item_cluster(task, row) for row in rows]
    items["chance"] = [get_task(task).scoring.chance(row) for row in rows]
    loglik_s = None
    if get_task(task).scoring.multiple_choice is not None and config["protocol"] == "corrected":
        started = time.perf_counter()
        items = pd.concat([items, _multiple_choice_items(model, tokenizer, task, rows, batch_size)], axis=1)
        loglik_s = time.perf_counter() - started
    latency = _latency_summary(pass_seconds, tokens, config["max_new_tokens"])

    metrics = scoring.summarize(task, items)
    write_parquet(out_dir / f"items-{task}.parquet", items)
    record = {
        "kind": "eval",
        "status": "ok",
        "task": task,
        "model": {**info.to_dict(), **identity},
        "protocol": config["protocol"],
        "config": config,
        "config_hash": chash,
        "n_items": len(items),
        "metrics": metrics,
        "parse_rate": metrics["corrected"]["parse_rate"],
        "latency": latency,
        "eval_backend": engine.to_dict(),
        "throughput": {
            "batch_size": config["eval_batch_size"],
            "engine": engine.name,
            "items": len(items),
            "wall_s": batched_s,
            "items_per_s": len(items) / batched_s if batched_s else None,
            "tokens_generated_mean": float(items["tokens_generated"].mean()),
            "hit_max_new_tokens": float(items["hit_max_new_tokens"].mean()),
        },
        # timed replies (Transformers' generate(), batch 1) identical to the scored ones
        "latency_reply_same_share": float(items.loc[subset, "latency_reply_same"].astype(float).mean())
        if subset
        else None,
        "memory": memory.result(),
        "memory_batched": memory_batched.result(),
        "timings": {"load_s": load_s, "generate_s": batched_s, "loglik_s": loglik_s},
        "meta": run_metadata(info.device),
    }
    write_json(out_dir / f"eval-{task}.json", record)
    return record
