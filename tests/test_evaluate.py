"""Evaluation on the tiny model: complete per-item records and figures for every task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from peftlab.config import resolve_config
from peftlab.core.errors import ConfigError
from peftlab.run.evaluate import _latency_summary, item_cluster, latency_fit, run_evaluation
from peftlab.run.memory import PhaseMemory
from peftlab.run.train import run_training
from peftlab.tasks.registry import load_rows
from peftlab.tasks.squad_v2 import passage_cluster

ITEM_COLUMNS = {
    "id",
    "task",
    "prompt",
    "reply",
    "parsed",
    "parsed_ok",
    "gold",
    "score",
    "tokens_generated",
    "seconds",
    "latency_s",
    "latency_s_pass1",
    "latency_s_pass2",
    "latency_tokens",
    "cluster",
    "ref_score",
    "reply_from",
    "latency_reply_same",
}
LATENCY_KEYS = {
    "n",
    "batch_size",
    "mean_s",
    "median_s",
    "p90_s",
    "tokens_mean",
    "tokens_median",
    "s_per_token",
    "hit_max_new_tokens",
    "passes",
    "pass_means_s",
    "timing_noise_rel",
    "s_per_token_fit",
    "overhead_s_fit",
}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "base"
    config = resolve_config(
        overrides=dict(base_model="tiny", n_eval=6, max_new_tokens=10, eval_batch_size=4, n_latency=3, out_dir=str(out))
    )
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


def test_every_item_is_scored_from_one_batched_decoding_and_timed_items_are_compared(evaluated):
    """Every item's scored reply comes from one engine's decoding of all items (the batched
    decoder on a CPU); the timed items' batch-1 replies are compared with them, not scored."""
    from peftlab.run.generate import generate_batched

    config, records = evaluated
    model_inputs = {}
    for task, record in records.items():
        items = pd.read_parquet(Path(config["out_dir"]) / f"items-{task}.parquet")
        timed = items["latency_s"].notna()
        assert (items["reply_from"] == "peftlab").all() and record["eval_backend"]["name"] == "peftlab"
        assert items.loc[timed, "latency_reply_same"].notna().all()
        assert record["throughput"]["items"] == len(items) == 6
        model_inputs[task] = items
    from peftlab.models.loading import load_model

    model, tokenizer, _ = load_model(base_model="tiny", dtype="float32", device="cpu")
    for task, items in model_inputs.items():
        everything = generate_batched(
            model, tokenizer, list(items["prompt"]), max_new_tokens=config["max_new_tokens"], batch_size=4
        )
        assert [g["reply"] for g in everything] == list(items["reply"]), task


def test_latency_is_timed_in_passes_and_summarised_from_per_item_means(evaluated):
    config, records = evaluated
    assert config["latency_repeats"] == 2  # the default
    for task, record in records.items():
        items = pd.read_parquet(Path(config["out_dir"]) / f"items-{task}.parquet")
        timed = items[items["latency_s"].notna()]
        assert (
            len(timed) == 3
            and items.loc[items["latency_s"].isna(), ["latency_s_pass1", "latency_s_pass2"]].isna().all().all()
        )
        assert "latency_s_pass3" not in items.columns
        assert np.allclose(timed["latency_s"], (timed["latency_s_pass1"] + timed["latency_s_pass2"]) / 2)
        assert timed["latency_tokens"].notna().all() and items["latency_tokens"].isna().sum() == 3
        latency = record["latency"]
        assert LATENCY_KEYS <= set(latency) and latency["passes"] == 2
        assert latency["mean_s"] == pytest.approx(timed["latency_s"].mean())
        assert latency["median_s"] == pytest.approx(timed["latency_s"].median())
        assert latency["pass_means_s"] == pytest.approx(
            [timed["latency_s_pass1"].mean(), timed["latency_s_pass2"].mean()]
        )
        spread = max(latency["pass_means_s"]) - min(latency["pass_means_s"])
        assert latency["timing_noise_rel"] == pytest.approx(spread / latency["mean_s"])
        tokens = timed["latency_tokens"].astype(float)
        if tokens.nunique() == 1:
            assert latency["s_per_token_fit"] is None and latency["overhead_s_fit"] is None
        else:
            slope, overhead = np.polyfit(tokens, timed["latency_s"], 1)
            assert latency["s_per_token_fit"] == pytest.approx(slope)
            assert latency["overhead_s_fit"] == pytest.approx(overhead)


def test_latency_summary_fit_and_noise():
    passes = [np.array([1.0, 2.0, 3.0]), np.array([1.2, 2.2, 3.2])]
    tokens = np.array([10, 20, 30])
    latency = _latency_summary(passes, tokens, max_new_tokens=30)
    assert latency["mean_s"] == pytest.approx(2.1) and latency["pass_means_s"] == pytest.approx([2.0, 2.2])
    assert latency["timing_noise_rel"] == pytest.approx(0.2 / 2.1)
    assert latency["s_per_token_fit"] == pytest.approx(0.1) and latency["overhead_s_fit"] == pytest.approx(0.1)
    assert latency["hit_max_new_tokens"] == pytest.approx(1 / 3) and latency["passes"] == 2
    one = _latency_summary(passes[:1], tokens, max_new_tokens=30)
    assert one["passes"] == 1 and one["timing_noise_rel"] is None
    assert latency_fit([1.0, 2.0], [5, 5]) == (None, None)  # tokens do not vary: no fit
    assert _latency_summary([], np.array([], dtype=int), max_new_tokens=30)["n"] == 0


def test_memory_is_measured_per_phase(evaluated):
    config, records = evaluated
    for record in records.values():
        assert record["memory"]["label"].startswith("batch-1 serving peak")
        assert record["memory_batched"]["label"].startswith("batched scoring peak (batch 4)")
        assert record["memory"]["peak_rss_gb"] > 0 and record["memory_batched"]["peak_rss_gb"] > 0


def test_clusters_group_squad_questions_on_one_passage(evaluated):
    config, _ = evaluated
    rows = load_rows(task="squad_v2", split="test", source="reference")
    assert rows[0]["context"] == rows[9]["context"] and rows[0]["id"] != rows[9]["id"]
    assert item_cluster("squad_v2", rows[0]) == item_cluster("squad_v2", rows[9]) != item_cluster("squad_v2", rows[1])
    assert passage_cluster(rows[0]["context"]) == item_cluster("squad_v2", rows[0])
    assert len(item_cluster("squad_v2", rows[0])) == 12
    squad = pd.read_parquet(Path(config["out_dir"]) / "items-squad_v2.parquet")
    assert squad["cluster"].tolist() == [passage_cluster(r["context"]) for r in rows[:6]]
    arc = pd.read_parquet(Path(config["out_dir"]) / "items-arc.parquet")
    assert arc["cluster"].tolist() == arc["id"].astype(str).tolist()


def test_one_pass_and_shared_passages_end_to_end(tmp_path):
    config = resolve_config(
        overrides=dict(
            base_model="tiny",
            data_source="hf",
            eval_tasks=["squad_v2"],
            n_eval=3,
            max_new_tokens=4,
            eval_batch_size=3,
            n_latency=2,
            latency_repeats=1,
            out_dir=str(tmp_path),
        )
    )
    record = run_evaluation(config=config)["squad_v2"]
    items = pd.read_parquet(tmp_path / "items-squad_v2.parquet")
    assert items["cluster"].nunique() == 1  # the first three questions of the sample share one passage
    assert "latency_s_pass2" not in items.columns
    assert np.array_equal(items["latency_s"].dropna(), items["latency_s_pass1"].dropna())
    assert record["latency"]["passes"] == 1 and record["latency"]["timing_noise_rel"] is None


def test_latency_repeats_is_validated_and_not_part_of_the_evaluation_identity(evaluated):
    config, records = evaluated
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="latency_repeats"):
            resolve_config(overrides=dict(latency_repeats=bad))
    again = run_evaluation(config={**config, "latency_repeats": 3})  # the finished results are reused
    assert again["arc"]["meta"]["written_at"] == records["arc"]["meta"]["written_at"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_each_cuda_phase_starts_from_an_empty_cache():
    device = torch.device("cuda")
    with PhaseMemory(device, label="first"):
        block = torch.empty(256 * 1024**2, dtype=torch.uint8, device=device)
        del block  # freed, but kept by the allocator's cache
    assert torch.cuda.memory_reserved(device) >= 256 * 1024**2
    with PhaseMemory(device, label="second") as second:
        torch.empty(1024**2, dtype=torch.uint8, device=device)
    figures = second.result()
    assert figures["label"].startswith("second: ") and figures["peak_reserved_gb"] < 0.25


def test_system_prompt_comes_first_in_the_corrected_protocol(evaluated):
    config, _ = evaluated
    prompt = pd.read_parquet(Path(config["out_dir"]) / "items-arc.parquet")["prompt"].iloc[0]
    assert prompt.index("multiple-choice test") < prompt.index("<|im_start|>user")


def test_reference_protocol_puts_the_system_message_after_the_user(tmp_path):
    from peftlab.config import resolve_config

    config = resolve_config(
        overrides=dict(
            base_model="tiny",
            protocol="reference",
            eval_tasks=["squad_v2"],
            n_eval=2,
            max_new_tokens=4,
            n_latency=0,
            out_dir=str(tmp_path),
        )
    )
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
