"""Hand-made study records, written as the project writes them: items files, eval records and
training records, with every figure chosen by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from peftlab.core.files import write_json, write_parquet
from peftlab.tasks import scoring
from peftlab.tasks.registry import TASKS as TASK_REGISTRY

N = 40
TASKS = ("arc", "openmath", "squad_v2")
CPU_EVAL = {"device": "cpu", "peak_rss_gb": 0.5, "label": "process peak RSS over the phase"}
CPU_TRAIN = {"device": "cpu", "peak_rss_gb": 1.25, "label": "process peak RSS over the phase"}


def golds(task: str, n: int = N) -> list:
    kind = TASK_REGISTRY[task].scoring.answer_kind
    if kind == "choice":
        return ["ABCD"[i % 4] for i in range(n)]
    if kind == "number":
        return [float(i + 1) for i in range(n)]
    return [[f"answer {i}"] for i in range(n)]


def replies(task: str, outcome, n: int = N) -> list[str]:
    """Per item: True (right), False (wrong, boxed) or None (no box: unparsed)."""
    gold = golds(task, n)
    out = []
    for i, ok in enumerate(outcome):
        if ok is None:
            out.append("I am not sure.")
            continue
        kind = TASK_REGISTRY[task].scoring.answer_kind
        if kind == "choice":
            answer = gold[i] if ok else "ABCD"[(i + 1) % 4]
        elif kind == "number":
            answer = f"{gold[i]:g}" if ok else f"{gold[i] + 3:g}"
        else:
            answer = gold[i][0] if ok else "something else"
        out.append(f"\\boxed{{{answer}}}")
    return out


def mask(n_right: int, offset: int = 0, n: int = N) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[[(offset + i) % n for i in range(n_right)]] = True
    return out


def identity(name: str, method: str, rank, train_task, seed, base_model: str) -> dict:
    # as the evaluator records it: a trained model is its merged checkpoint (the base is in train.json)
    model = base_model if method == "base" else f"/study/runs/{name}/model"
    return {
        "label": name,
        "base_model": model,
        "trained": method != "base",
        "run": None if method == "base" else name,
        "method": method,
        "rank": rank,
        "train_task": train_task,
        "seed": seed,
        "dtype": "float32",
        "device": "cpu",
        "n_params": 1000,
    }


def write_model(
    out: Path,
    name: str,
    *,
    method: str = "base",
    rank=None,
    train_task=None,
    seed=None,
    correct=None,
    latency=0.1,
    tokens=5,
    failed: bool = False,
    tasks=TASKS,
    protocol: str = "corrected",
    base_model: str = "tiny",
    n: int = N,
    ids=None,
    clusters=None,
    eval_memory=None,
    train_memory=None,
    batched_memory=None,
    timing_noise_rel=0.01,
    texts=None,
    cut=None,
) -> None:
    """A model's records: per task an items file and an eval record; a train record when trained.

    ``correct``: per-item outcomes (a mask, or a dict per task; None entries are unparsed);
    ``latency``/``tokens``: a number or per-item array (dict per task allowed); ``ids``: the
    item ids (default ``<task>-<i>``); ``clusters``: per-item cluster names; ``texts``: the
    replies themselves per task (instead of ``correct``'s); ``cut``: per item (dict per task
    allowed), whether the reply reached max_new_tokens.
    """
    run = out / "runs" / name
    ident = identity(name, method, rank, train_task, seed, base_model)
    if method != "base":
        train = {
            "kind": "train",
            "status": "failed" if failed else "ok",
            "config": {
                "base_model": base_model,
                "method": method,
                "rank": rank,
                "train_task": train_task,
                "seed": seed,
                "protocol": protocol,
            },
            "memory": None if failed else (train_memory or CPU_TRAIN),
            "timings": {"train_s": 2.0},
            "tokens_per_s": 50.0,
            "loss_curve": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}],
            "final_loss": 1.5,
            "trainable_params": 10,
            "total_params": 1000,
            "meta": {},
        }
        if failed:
            train["error"] = {"type": "RuntimeError", "message": "out of memory", "phase": "train"}
        write_json(run / "train.json", train)
    for task in tasks:
        if failed:
            write_json(
                run / f"eval-{task}.json",
                {
                    "kind": "eval",
                    "status": "failed",
                    "task": task,
                    "model": ident,
                    "config": {},
                    "error": {"type": "RuntimeError", "message": f"training run {name} failed", "phase": "upstream"},
                    "meta": {},
                },
            )
            continue
        gold = golds(task, n)
        if texts is not None and task in texts:
            reply = list(texts[task])
        else:
            outcome = correct[task] if isinstance(correct, dict) else correct
            reply = replies(task, [None if o is None else bool(o) for o in outcome], n)
        scored = scoring.score_items(task, reply, gold)
        lat = latency[task] if isinstance(latency, dict) else latency
        tok = tokens[task] if isinstance(tokens, dict) else tokens
        lat = np.broadcast_to(np.asarray(lat, dtype=float), (n,)).copy()
        tok = np.broadcast_to(np.asarray(tok, dtype=int), (n,)).copy()
        items = pd.DataFrame(
            {
                "id": ids if ids is not None else [f"{task}-{i}" for i in range(n)],
                "task": task,
                "reply": reply,
                "gold": [g if TASK_REGISTRY[task].scoring.answer_kind == "span" else str(g) for g in gold],
                "tokens_generated": tok,
                "seconds": lat,
            }
        )
        items = pd.concat([items, scored], axis=1)
        if clusters is not None:
            items["cluster"] = clusters
        items["chance"] = 0.25 if TASK_REGISTRY[task].scoring.answer_kind == "choice" else 0.0  # four options
        cut_items = cut[task] if isinstance(cut, dict) else cut
        if cut_items is not None:
            items["hit_max_new_tokens"] = np.broadcast_to(np.asarray(cut_items, dtype=bool), (n,)).copy()
        items["latency_s"] = lat
        items["latency_tokens"] = pd.array(tok, dtype="Int64")
        metrics = scoring.summarize(task, items)
        write_parquet(run / f"items-{task}.parquet", items)
        record = {
            "kind": "eval",
            "status": "ok",
            "task": task,
            "protocol": protocol,
            "model": ident,
            "config": {"protocol": protocol},
            "config_hash": "h",
            "n_items": n,
            "metrics": metrics,
            "parse_rate": metrics["corrected"]["parse_rate"],
            "latency": {
                "n": n,
                "batch_size": 1,
                "mean_s": float(lat.mean()),
                "median_s": float(np.median(lat)),
                "p90_s": float(np.quantile(lat, 0.9)),
                "tokens_mean": float(tok.mean()),
                "tokens_median": float(np.median(tok)),
                "s_per_token": float(lat.sum() / max(tok.sum(), 1)),
                "timing_noise_rel": timing_noise_rel,
            },
            "memory": eval_memory or CPU_EVAL,
            "meta": {},
        }
        if batched_memory is not None:
            record["memory_batched"] = batched_memory
        write_json(run / f"eval-{task}.json", record)


def write_squad_study_core(out) -> None:
    """The models several hand-made studies start from: two untuned bases (a small one and
    org/Big-7B), and on SQuAD v2 a full FT that gets every item right and a LoRA r8 that gets
    8 right, slower and longer."""
    write_model(out, "base-tiny", correct=mask(10))
    write_model(out, "base-big", correct=mask(30), base_model="org/Big-7B")
    write_model(
        out,
        "squad_v2-full-s0",
        method="full",
        train_task="squad_v2",
        seed=0,
        correct={"arc": mask(30), "openmath": mask(20), "squad_v2": mask(N)},
        latency=0.1,
    )
    write_model(
        out,
        "squad_v2-lora-r8-s0",
        method="lora",
        rank=8,
        train_task="squad_v2",
        seed=0,
        correct=mask(8),
        latency=0.2,
        tokens=8,
    )


def write_squad_dora_r8(out) -> None:
    """A SQuAD v2 DoRA r8 that gets every SQuAD item but one right (10 on ARC and OpenMath), slower."""
    write_model(
        out,
        "squad_v2-dora-r8-s0",
        method="dora",
        rank=8,
        train_task="squad_v2",
        seed=0,
        correct={"arc": mask(10), "openmath": mask(10), "squad_v2": mask(N - 1)},
        latency=0.2,
    )
