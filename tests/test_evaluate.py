"""Evaluation on the tiny model: complete per-item records and figures for every task."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from peftlab.evaluate import run_evaluation
from peftlab.train import run_training

ITEM_COLUMNS = {"id", "task", "prompt", "reply", "parsed", "parsed_ok", "gold", "score", "tokens_generated",
                "seconds", "latency_s", "ref_score"}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from peftlab.config import resolve_config

    out = tmp_path_factory.mktemp("eval") / "base"
    config = resolve_config(overrides=dict(base_model="tiny", n_eval=6, max_new_tokens=10, eval_batch_size=4,
                                           n_latency=3, out_dir=str(out)))
    return config, run_evaluation(config=config)


def test_every_task_writes_items_and_figures(evaluated):
    config, records = evaluated
    out = Path(config["out_dir"])
    for task in ("arc", "openmath", "squad_v2"):
        record = records[task]
        assert record["status"] == "ok"
        assert json.loads((out / f"eval-{task}.json").read_text())["config_hash"] == record["config_hash"]
        items = pd.read_parquet(out / f"items-{task}.parquet")
        assert ITEM_COLUMNS <= set(items.columns) and len(items) == 6
        assert items["prompt"].str.len().gt(0).all() and (items["tokens_generated"] > 0).all()
        assert items["latency_s"].notna().sum() == 3  # batch-1 timing on a fixed subset
        assert set(record["metrics"]) == {"corrected", "reference", "headline"}
        latency = record["latency"]
        assert latency["n"] == 3 and latency["median_s"] > 0 and latency["p90_s"] >= latency["median_s"]
        assert latency["s_per_token"] > 0 and record["throughput"]["batch_size"] == 4
        assert record["memory"]["device"] == "cpu" and record["model"]["dtype"] == "float32"
        assert record["model"]["n_params"] > 0
    squad = pd.read_parquet(out / "items-squad_v2.parquet")
    assert all(isinstance(list(g), list) for g in squad["gold"])


def test_system_prompt_comes_first_in_the_corrected_protocol(evaluated):
    config, _ = evaluated
    prompt = pd.read_parquet(Path(config["out_dir"]) / "items-arc.parquet")["prompt"].iloc[0]
    assert prompt.index("multiple-choice test") < prompt.index("<|im_start|>user")


def test_reference_protocol_puts_the_system_message_after_the_user(tmp_path):
    from peftlab.config import resolve_config

    config = resolve_config(overrides=dict(base_model="tiny", protocol="reference", eval_tasks=["squad_v2"],
                                           n_eval=2, max_new_tokens=4, n_latency=0, out_dir=str(tmp_path)))
    run_evaluation(config=config)
    prompt = pd.read_parquet(tmp_path / "items-squad_v2.parquet")["prompt"].iloc[0]
    assert prompt.index("<|im_start|>user") < prompt.index("answering a question based on a passage")


def test_a_finished_evaluation_is_not_redone(evaluated):
    config, records = evaluated
    again = run_evaluation(config=config)
    assert again["arc"]["meta"]["written_at"] == records["arc"]["meta"]["written_at"]


def test_trained_run_is_evaluated_through_its_merged_model(tmp_path, tiny_config):
    config = tiny_config(method="lora", n_train=4, out_dir=str(tmp_path / "run"), eval_tasks=["arc"])
    run_training(config=config)
    records = run_evaluation(config=config, run_dir=str(tmp_path / "run"))
    model = records["arc"]["model"]
    assert model["trained"] and model["method"] == "lora" and model["path"].endswith("run/model")
