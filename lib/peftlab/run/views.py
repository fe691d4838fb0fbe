"""Small tables that notebooks show: what a run or an evaluation produced, at a glance."""

from __future__ import annotations

import pandas as pd

from peftlab.methods.registry import get_method


def training_summary(record: dict) -> pd.DataFrame:
    """One column of the figures a reader checks first after a training run."""
    if record["status"] != "ok":
        error = record.get("error", {})
        return pd.DataFrame(
            {
                "value": {
                    "status": "failed",
                    "phase": error.get("phase"),
                    "error": f"{error.get('type')}: {error.get('message')}",
                }
            }
        )
    cfg = record["config"]
    memory = record["memory"]
    peak = (
        f"{memory['peak_reserved_gb']:.2f} GB reserved / {memory['peak_allocated_gb']:.2f} GB allocated"
        if memory["device"] == "cuda"
        else f"{memory['peak_rss_gb']:.2f} GB ({memory['label']})"
    )
    rows = {
        "run": record["run"],
        "status": record["status"],
        "config hash": record["config_hash"],
        "base model": cfg["base_model"],
        "method": cfg["method"],
        "rank": cfg["rank"] if get_method(cfg["method"]).ranked else None,
        "protocol": cfg["protocol"],
        "learning rate": record["learning_rate"],
        "alpha": record["alpha"],
        "train task": cfg["train_task"],
        "rows trained (skipped: too long)": f"{record['n_rows']} ({record['n_rows_too_long']})",
        "trainable / total params": f"{record['trainable_params']:,} / {record['total_params']:,} "
        f"({100 * record['trainable_share']:.3f} %)",
        "adapter on disk (bytes)": record["adapter_bytes"],
        "optimizer steps": record["optimizer_steps"],
        "loss first -> last": f"{record['loss_curve'][0]['loss']:.4f} -> {record['final_loss']:.4f}"
        if record["loss_curve"]
        else None,
        "train wall (s)": round(record["timings"]["train_s"], 1),
        "tokens/s": round(record["tokens_per_s"], 1),
        "peak memory (train)": peak,
        "merged model dtype": record["model"]["merged_dtype"],
        "device": record["meta"]["device"],
    }
    return pd.DataFrame({"value": {k: ("" if v is None else str(v)) for k, v in rows.items()}})


def loss_curve(record: dict) -> pd.DataFrame:
    return pd.DataFrame(record.get("loss_curve", []))


def evaluation_summary(records: dict[str, dict]) -> pd.DataFrame:
    """One row per task: the headline metric, parse rate, latency and memory."""
    rows = []
    for task, record in records.items():
        if record["status"] != "ok":
            rows.append({"task": task, "status": "failed", "error": record["error"]["message"]})
            continue
        metrics, latency = record["metrics"], record["latency"]
        headline = metrics["headline"]
        memory = record["memory"]
        rows.append(
            {
                "task": task,
                "status": "ok",
                "model": record["model"]["label"],
                "n": record["n_items"],
                headline["name"]: headline["value"],
                "parse rate": record["parse_rate"],
                "latency mean (s)": latency.get("mean_s"),
                "latency median (s)": latency.get("median_s"),
                "latency p90 (s)": latency.get("p90_s"),
                "tokens/reply": latency.get("tokens_mean"),
                "s/token": latency.get("s_per_token"),
                "items/s (batched)": record["throughput"]["items_per_s"],
                "peak memory (GB)": memory.get("peak_reserved_gb", memory.get("peak_rss_gb")),
                "dtype": record["model"]["dtype"],
            }
        )
    return pd.DataFrame(rows).set_index("task")


def metrics_table(records: dict[str, dict]) -> pd.DataFrame:
    """Every metric of every task, corrected and reference scoring side by side."""
    rows = []
    for task, record in records.items():
        if record["status"] != "ok":
            continue
        for protocol in ("corrected", "reference"):
            for name, value in record["metrics"][protocol].items():
                if isinstance(value, (int, float)) or value is None:
                    rows.append({"task": task, "scoring": protocol, "metric": name, "value": value})
    return pd.DataFrame(rows)


def sample_replies_by_task(*, config: dict, records: dict[str, dict], n: int = 3) -> pd.DataFrame:
    """The first `n` items of each evaluated task, read back from the items files."""
    from pathlib import Path

    frames = []
    for task, record in records.items():
        path = Path(config["out_dir"]) / f"items-{task}.parquet"
        if record["status"] == "ok" and path.is_file():
            frames.append(
                pd.read_parquet(path)[["task", "id", "reply", "parsed", "parsed_ok", "gold", "score"]].head(n)
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
