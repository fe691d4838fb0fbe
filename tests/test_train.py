"""Training on the tiny model: every method trains, merges exactly, and records everything."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from peftlab.config import resolve_config
from peftlab.core.errors import ConfigError
from peftlab.run.train import run_training, training_layout

RECORD_FIELDS = {
    "kind",
    "status",
    "config",
    "config_hash",
    "run",
    "learning_rate",
    "trainable_params",
    "total_params",
    "adapter_bytes",
    "n_rows",
    "n_rows_too_long",
    "optimizer_steps",
    "tokens",
    "tokens_per_s",
    "loss_curve",
    "final_loss",
    "memory",
    "timings",
    "meta",
    "model",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run per method on the same rows."""
    root = tmp_path_factory.mktemp("runs")
    records = {}
    for method in ("full", "lora", "dora", "vera"):
        config = resolve_config(
            overrides=dict(
                base_model="tiny",
                method=method,
                rank=8,
                n_train=8,
                batch_size=4,
                max_length=512,
                out_dir=str(root / method),
            )
        )
        records[method] = run_training(config=config)
    return records


def test_every_method_finishes_with_a_complete_record(trained):
    for method, record in trained.items():
        assert record["status"] == "ok", record.get("error")
        assert RECORD_FIELDS <= set(record), RECORD_FIELDS - set(record)
        on_disk = json.loads((Path(record["config"]["out_dir"]) / "train.json").read_text())
        assert on_disk["config_hash"] == record["config_hash"]
        assert all(math.isfinite(point["loss"]) for point in record["loss_curve"])
        assert record["memory"]["device"] == "cpu" and record["memory"]["peak_rss_gb"] > 0
        assert record["meta"]["versions"]["trl"] and "commit" in record["meta"]["git"]
        assert record["tokens"] > 0 and record["tokens_per_s"] > 0
        saved = json.loads((Path(record["config"]["out_dir"]) / "model" / "config.json").read_text())
        assert saved["use_cache"] is True  # a merged model must decode with its KV cache
        assert (record["adapter_bytes"] is None) == (method == "full")
        # batch_size 4 set, grad_accum and padding_free left to the CPU: 8 rows per step, padded
        assert record["layout"] == {"batch_size": 4, "grad_accum": 2, "padding_free": False, "dropout_masks": "packed"}
        assert record["optimizer_steps"] == 1 and record["n_rows"] == 8


@pytest.mark.parametrize(
    "device, keys, expected",
    [
        ("cpu", {}, (1, 8, False)),  # one row at a time on a CPU
        ("cuda", {}, (8, 1, True)),  # one padding-free batch of 8 on a GPU
        ("cpu", {"batch_size": 4}, (4, 2, False)),  # a set batch keeps 8 rows per optimizer step
        ("cuda", {"batch_size": 3}, (3, 3, True)),
        ("cpu", {"grad_accum": 2}, (1, 2, False)),
        ("cuda", {"batch_size": 2, "grad_accum": 1, "padding_free": False}, (2, 1, False)),  # all set: as set
    ],
)
def test_training_layout_left_to_auto_follows_the_device(device, keys, expected):
    config = resolve_config(overrides=keys)
    assert {k: config[k] for k in ("batch_size", "grad_accum", "padding_free")} == {
        "batch_size": "auto",
        "grad_accum": "auto",
        "padding_free": "auto",
        **keys,
    }
    layout = training_layout(config, device)
    assert (layout["batch_size"], layout["grad_accum"], layout["padding_free"]) == expected
    # adapter dropout draws packed masks on a CPU (cheap there), nn.Dropout's elsewhere
    assert layout["dropout_masks"] == ("packed" if device == "cpu" else "bernoulli")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("choice", ["packed", "bernoulli"])
def test_dropout_masks_set_explicitly_hold_on_every_device(device, choice):
    assert training_layout(resolve_config(overrides={"dropout_masks": choice}), device)["dropout_masks"] == choice


def test_dropout_masks_rejects_an_unknown_choice():
    with pytest.raises(ConfigError, match="dropout_masks.*allowed.*packed"):
        resolve_config(overrides={"dropout_masks": "fast"})


def test_trainable_parameters_are_ordered_vera_lora_full(trained):
    counts = {m: r["trainable_params"] for m, r in trained.items()}
    assert counts["vera"] < counts["lora"] < counts["dora"] < counts["full"]
    assert counts["full"] == trained["full"]["total_params"]


@pytest.mark.parametrize("method, lr", [("full", 3e-3), ("lora", 3e-2), ("dora", 3e-2), ("vera", 1e-1)])
def test_loss_decreases_on_a_trivially_learnable_task(method, lr, tmp_path):
    """Four rows seen for 30 epochs: the loss must fall by well over half a nat for every method.
    (Measured: full 6.9 -> 2.0, LoRA/DoRA 6.9 -> 5.9, VeRA 6.9 -> 6.1.)"""
    config = resolve_config(
        overrides=dict(
            base_model="tiny",
            method=method,
            rank=8,
            n_train=4,
            batch_size=4,
            epochs=30,
            learning_rate=lr,
            warmup_ratio=0.0,
            dropout=0.0,
            train_task="arc",
            out_dir=str(tmp_path / method),
        )
    )
    curve = [p["loss"] for p in run_training(config=config)["loss_curve"]]
    assert all(math.isfinite(loss) for loss in curve)
    assert curve[-1] < curve[0] - 0.5, curve
    third = len(curve) // 3
    assert sum(curve[-third:]) < sum(curve[:third]), curve


def test_finished_run_is_reused_and_another_config_is_refused(trained):
    record = trained["lora"]
    again = run_training(config=record["config"])
    assert again["meta"]["written_at"] == record["meta"]["written_at"]  # not redone
    changed = dict(record["config"], rank=4)
    with pytest.raises(ConfigError, match="already holds a finished run of another configuration"):
        run_training(config=changed)


def test_merged_checkpoint_is_saved_in_the_base_dtype(tmp_path):
    config = resolve_config(
        overrides=dict(
            base_model="tiny",
            dtype="bfloat16",
            method="lora",
            rank=4,
            n_train=4,
            batch_size=4,
            max_length=512,
            out_dir=str(tmp_path / "bf16"),
        )
    )
    record = run_training(config=config)
    assert record["model"]["merged_dtype"] == "bfloat16"
    saved = json.loads((tmp_path / "bf16" / "model" / "config.json").read_text())
    assert saved["dtype"] == "bfloat16"


def _curve(tmp_path, name, **overrides):
    defaults = dict(
        base_model="tiny",
        method="lora",
        rank=8,
        dropout=0.0,
        n_train=16,
        batch_size=4,
        grad_accum=1,
        max_length=512,
        group_by_length=False,
        out_dir=str(tmp_path / name),
    )
    config = resolve_config(overrides={**defaults, **overrides})
    record = run_training(config=config)
    assert record["status"] == "ok", record.get("error")
    return record, [point["loss"] for point in record["loss_curve"]]


def test_padding_free_batches_learn_what_padded_batches_learn(tmp_path):
    """Rows concatenated into one sequence, attention kept inside each row: the same loss at
    every step as the padded batch, so the speed-up does not change what is trained."""
    _, padded = _curve(tmp_path, "padded", padding_free=False, mixed_precision="no")
    _, packed = _curve(tmp_path, "packed", padding_free=True, mixed_precision="no")
    assert len(packed) == len(padded) == 4
    assert packed == pytest.approx(padded, rel=1e-4)


def test_bf16_autocast_is_recorded_and_keeps_float32_weights(tmp_path):
    fp32, exact = _curve(tmp_path, "fp32", mixed_precision="no")
    bf16, mixed = _curve(tmp_path, "bf16", mixed_precision="bf16")
    assert fp32["bf16_autocast"] is False and bf16["bf16_autocast"] is True
    assert bf16["model"]["merged_dtype"] == "float32"
    assert mixed == pytest.approx(exact, rel=0.05)


def test_lm_head_scores_only_labelled_positions_with_the_same_loss(tmp_path, monkeypatch):
    """`lm_head_positions: labelled` projects only the completion's positions onto the
    vocabulary (on a CPU too, where TRL would project every position and mask the prompt's);
    `all` projects every position. The losses are the same."""
    import trl.trainer.utils as trl_utils

    projected: list[int] = []
    fused, trl_choice = trl_utils._ChunkedLogProbFunction, trl_utils._use_triton

    class Counting:
        @staticmethod
        def apply(hidden, *args):
            projected.append(hidden.shape[0])
            return fused.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    counts, curves = {}, {}
    for positions in ("labelled", "all"):
        projected.clear()
        record, curves[positions] = _curve(tmp_path, positions, lm_head_positions=positions, batch_size=1, grad_accum=4)
        counts[positions] = sum(projected)
    assert curves["labelled"] == pytest.approx(curves["all"], rel=1e-5)
    # every position but the last of each row, against the completions' tokens only
    assert counts["all"] == record["tokens"] - record["n_rows"]
    assert 0 < counts["labelled"] < counts["all"] / 2
    assert trl_utils._use_triton is trl_choice  # TRL's own choice is back after the run
