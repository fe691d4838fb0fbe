"""The benchmark's helpers on hand-made inputs, and its prefix and training parts on the tiny model."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime, timedelta, timezone

import pytest

from peftlab.core.paths import repo_root

sys.path.insert(0, str(repo_root()))

from bench import study_runs  # noqa: E402
from bench.evaluation import _item_positions, compare, eval_summary, size_suffix, split_items  # noqa: E402
from bench.scale import StepClock, scale_summary, time_decode  # noqa: E402
from bench.training import compare_layouts  # noqa: E402


def test_sizes_split_evenly_over_the_tasks_and_name_their_keys():
    assert split_items(60) == {"arc": 20, "openmath": 20, "squad_v2": 20}
    assert split_items(200) == {"arc": 67, "openmath": 67, "squad_v2": 66}
    assert split_items(2) == {"arc": 1, "openmath": 1, "squad_v2": 0}
    with pytest.raises(ValueError):
        split_items(0)
    assert size_suffix(60) == "" and size_suffix(200) == "_200"
    # a smaller size's items are the first ones of each task inside the largest size's list
    assert _item_positions(split_items(4), split_items(7)) == [0, 1, 3, 5]


def _variant(speedup, share):
    return {"speedup": speedup, "identical_parsed_share": share, "identical_reply_share": share, "goal_met": False}


def test_eval_summary_keys_per_size():
    result = {
        "items": 200,
        "variants": {
            "batched": _variant(6.0, 1.0),
            "batched_dynamic_cache": _variant(3.0, 1.0),
            "batched_stop_at_first_box": _variant(7.0, 0.995),
        },
    }
    keys = eval_summary(result)
    assert keys["eval_speedup_200"] == 6.0 and keys["eval_identical_share_200"] == 1.0
    assert keys["eval_speedup_dynamic_cache_200"] == 3.0
    assert keys["eval_identical_share_stop_at_first_box_200"] == 0.995
    assert eval_summary({**result, "items": 60})["eval_speedup"] == 6.0


def test_agreement_reads_the_first_box_as_the_reference_scoring_does():
    ref = [{"reply": "so \\boxed{7} or \\boxed{8}"}, {"reply": "no box"}, {"reply": "\\boxed{B}"}]
    got = [{"reply": "so \\boxed{7}"}, {"reply": "still no box"}, {"reply": "\\boxed{C}"}]
    agreement = compare(ref, got)
    assert agreement["identical_parsed_share"] == pytest.approx(2 / 3)
    assert agreement["identical_reply_share"] == 0
    assert agreement["differing_items"] == [2]


def test_layouts_compared_with_the_reference_and_the_fastest_equivalent_found():
    runs = {
        "reference": {"tokens_per_s": 100.0, "final_loss": 1.00, "memory": {"peak_rss_gb": 2.0, "label": "rss"}},
        "project": {"tokens_per_s": 90.0, "final_loss": 1.01, "memory": {"peak_rss_gb": 9.0}},
        "batch1_accum8": {"tokens_per_s": 130.0, "final_loss": 0.995, "memory": {"peak_rss_gb": 2.5}},
        "project_bf16": {"tokens_per_s": 200.0, "final_loss": 1.05, "memory": {"peak_reserved_gb": 4.0}},
    }
    result = compare_layouts(runs)
    layouts = result["layouts"]
    assert layouts["reference"]["speedup"] == 1.0 and layouts["reference"]["final_loss_rel_diff"] == 0
    assert layouts["project"]["speedup"] == pytest.approx(0.9)
    assert layouts["project"]["loss_equivalent"] and not layouts["project_bf16"]["loss_equivalent"]
    assert layouts["project_bf16"]["peak_memory_gb"] == 4.0 and layouts["project"]["peak_memory_gb"] == 9.0
    assert result["fastest_loss_equivalent"] == "batch1_accum8"
    assert result["fastest_loss_equivalent_speedup"] == pytest.approx(1.3)


def test_step_clock_times_prefill_and_decode_steps():
    ticks = iter([10.0, 10.5, 11.0, 11.5])
    clock = StepClock(clock=lambda: next(ticks))
    for length in (1, 2, 3, 4):
        for _ in range(3):  # every row of a batch of 3 reports the same step; only the first counts
            assert clock([0] * length) is False
    split = clock.split(started=9.0, batch=3)
    assert split["prefill_s"] == 1.0
    assert split["decode_steps"] == 3
    assert split["decode_s_per_step"] == pytest.approx(0.5)
    assert split["decode_s_per_token"] == pytest.approx(0.5 / 3)


def test_scale_decoding_writes_one_token_per_step():
    """The paper-scale decode timing is per model step: no drafted tokens ride along (random
    weights repeat themselves, so drafts would be accepted and steps would write several)."""
    from peftlab.models.loading import load_model

    model, tokenizer, _ = load_model(base_model="tiny", dtype="float32", device="cpu")
    passes = []
    forward = model.forward

    def counted(*args, **kwargs):
        passes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    model.forward = counted
    result = time_decode(model, tokenizer, ["What is 2 + 2?", "Hi"], new_tokens=40)
    assert result["tokens_generated"] == 80
    # each prompt's pass, then one pass of one token per row for each of the other 39 tokens
    assert [shape for shape in passes if shape[0] == 2] == [(2, 1)] * 39
    # the clock stamps tokens 1..39 (the 40th ends the reply unseen): 38 steps between them
    assert result["decode_steps"] == 38


def test_scale_summary_keeps_failed_methods_named():
    run = {
        "status": "ok",
        "train": {
            "s_per_step": 2.0,
            "tokens_per_s": 50.0,
            "peak_memory_gb": 3.0,
            "memory": {"label": "rss"},
            "trainable_params": 10,
        },
        "decode": {
            "batch_1": {"decode_s_per_token": 0.1, "decode_s_per_step": 0.1},
            "batch_4": {"decode_s_per_token": 0.05, "decode_s_per_step": 0.2},
        },
    }
    result = {
        "base_model": "random:qwen3-0.6b",
        "device": "cpu",
        "sizes": {"dtype": "float32"},
        "runs": {"lora-r256": run, "full": {"status": "failed", "error": {"type": "OutOfMemoryError"}}},
    }
    summary = scale_summary(result)
    assert summary["lora-r256"]["decode_s_per_token_batch_4"] == 0.05
    assert summary["full"] == {"status": "failed", "error": "OutOfMemoryError"}


T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def test_wall_time_spans_jobs_and_notices_a_second_session():
    jobs = [
        ("a", T0, T0 + timedelta(seconds=100)),
        ("b", T0 + timedelta(seconds=50), T0 + timedelta(seconds=150)),
        ("c", T0 + timedelta(seconds=160), T0 + timedelta(seconds=200)),
    ]
    wall = study_runs.wall_time(jobs)
    assert wall["wall_s"] == 200 and wall["busy_s"] == 190 and wall["largest_gap_s"] == 10 and wall["one_session"]
    later = jobs + [("d", T0 + timedelta(hours=5), T0 + timedelta(hours=5, seconds=10))]
    assert not study_runs.wall_time(later)["one_session"]
    assert study_runs.wall_time([])["wall_s"] is None


def test_items_per_task_is_the_minimum_over_models():
    records = [
        {"status": "ok", "task": "arc", "n_items": 16},
        {"status": "ok", "task": "arc", "n_items": 12},
        {"status": "ok", "task": "squad_v2", "n_items": 16},
        {"status": "failed", "task": "openmath"},
    ]
    assert study_runs.items_per_task(records) == {"by_task": {"arc": 12, "squad_v2": 16}, "min": 12}


def _meta(commit):
    return {"git": {"commit": commit, "dirty": False}}


def test_freshness_against_the_code():
    records = [{"meta": _meta("aaa")}, {"meta": _meta("bbb")}]
    unchanged = study_runs.freshness(records, changes_since=lambda commit: [])
    assert unchanged["status"] == "current"
    changed = study_runs.freshness(records, changes_since=lambda c: ["lib/peftlab/train.py"] if c == "aaa" else [])
    assert changed["status"] == "stale" and "aaa" in changed["why"] and "train.py" in changed["why"]
    assert study_runs.freshness(records, changes_since=lambda commit: None)["status"] == "stale"
    assert study_runs.freshness([{"meta": {}}], changes_since=lambda commit: [])["status"] == "stale"
    assert study_runs.freshness([])["status"] == "missing"


def _write_demo(folder, commit="abc"):
    run = folder / "runs" / "openmath-lora-r8-s0"
    run.mkdir(parents=True)
    (run / "train.json").write_text(
        json.dumps(
            {
                "kind": "train",
                "status": "ok",
                "config": {"method": "lora"},
                "model": {},
                "timings": {"train_s": 30.0, "load_s": 2.0},
                "meta": _meta(commit),
            }
        )
    )
    for task, n in (("arc", 16), ("squad_v2", 14)):
        (run / f"eval-{task}.json").write_text(
            json.dumps(
                {
                    "kind": "eval",
                    "status": "ok",
                    "task": task,
                    "n_items": n,
                    "timings": {"generate_s": 5.0},
                    "meta": _meta(commit),
                }
            )
        )
    for name, start, end in (
        ("train.ipynb", 0, 40),
        ("evaluate-arc.ipynb", 45, 60),
        ("evaluate-squad_v2.ipynb", 62, 80),
    ):
        meta = {
            "papermill": {
                "start_time": (T0 + timedelta(seconds=start)).isoformat(),
                "end_time": (T0 + timedelta(seconds=end)).isoformat(),
            }
        }
        (run / name).write_text(json.dumps({"metadata": meta, "cells": []}))
    return [
        "runs/openmath-lora-r8-s0/train.json",
        "runs/openmath-lora-r8-s0/eval-arc.json",
        "runs/openmath-lora-r8-s0/eval-squad_v2.json",
    ]


def test_demo_figures_only_from_current_complete_records(tmp_path, monkeypatch):
    expected = _write_demo(tmp_path / "demo")
    monkeypatch.setattr(study_runs, "code_changes_since", lambda commit: [])
    current = study_runs.demo_summary("demo", tmp_path / "demo", expected)
    assert current["demo_wall_s"] == 80 and current["demo_items_per_task"] == 14
    assert current["detail"]["split"]["train_s"] == 30.0

    missing = study_runs.demo_summary("demo", tmp_path / "demo", [*expected, "runs/base-embedded/eval-arc.json"])
    assert missing["demo_wall_s"] is None and "missing" in missing["demo_note"]

    monkeypatch.setattr(study_runs, "code_changes_since", lambda commit: ["lib/peftlab/generate.py"])
    stale = study_runs.demo_summary("demo", tmp_path / "demo", expected)
    assert stale["demo_wall_s"] is None and stale["demo_items_per_task"] is None
    assert "older than the code" in stale["demo_note"]

    nothing = study_runs.demo_summary("demo", tmp_path / "none", [])
    assert nothing["demo_wall_s"] is None and "no records" in nothing["demo_note"]


def test_prefix_part_reports_the_same_replies_with_and_without_the_shared_prefix():
    from bench.prefix import bench_prefix, prefix_summary

    result = bench_prefix(
        base_model="tiny", n_items=3, max_new_tokens=4, batch_size=2, device="cpu", dtype="float32", passes=1
    )
    for task, r in result["tasks"].items():
        assert 0 < r["shared_prefix_tokens"] < r["prompt_tokens"] / 3, task  # the system prompt, once per prompt
        assert r["identical_reply_share"] == 1.0 and r["speedup"] > 0
    assert prefix_summary(result)["prefix_identical_reply_share"] == 1.0


def test_training_layouts_that_auto_resolves_alike_are_measured_once(tmp_path, monkeypatch):
    from bench import training

    monkeypatch.setattr(training, "OUT", tmp_path)
    names = ("reference", "project", "batch1_accum8", "project_bernoulli_masks", "project_autograd_embedding")
    seen = []
    monkeypatch.setattr(
        training.train_module,
        "embedding_grad_in_place",
        lambda model: seen.append(model.get_input_embeddings().weight.requires_grad) or contextlib.nullcontext(True),
    )
    result = training.bench_train(
        base_model="tiny",
        n_train=8,
        device="cpu",
        dtype="float32",
        peaks={"float32": 1e11, "bfloat16": 1e11},
        layouts={k: training.LAYOUTS[k] for k in names},
        methods=("full", "lora"),
    )
    runs = result["lora"]["runs"]
    # on a CPU the project's layout is one row at a time, 8 per optimizer step, packed dropout masks
    assert runs["project"]["layout"] == {
        "batch_size": 1,
        "grad_accum": 8,
        "padding_free": False,
        "dropout_masks": "packed",
    }
    assert runs["batch1_accum8"]["same_as"] == "project"
    # the reference draws nn.Dropout's masks, as the study did; the project's masks are measured without the rest
    assert runs["reference"]["layout"] == {**runs["project"]["layout"], "dropout_masks": "bernoulli"}
    assert "same_as" not in runs["reference"] and "same_as" not in runs["project_bernoulli_masks"]
    assert runs["project_bernoulli_masks"]["layout"]["dropout_masks"] == "bernoulli"
    # checkpointing recomputes, it does not change the loss
    assert result["lora"]["layouts"]["project"]["loss_equivalent"]
    # full fine-tuning has no adapter dropout: its masks change nothing, so that layout is not run again
    assert result["full"]["runs"]["project_bernoulli_masks"]["same_as"] == "project"
    # the embedding's in-place gradient is undone for the reference and for its own layout where
    # the embedding trains: of full FT's runs only the project's keeps it. LoRA freezes the
    # embedding: nothing is undone (its three runs keep the lever, which leaves them alone) and
    # that layout is the project's.
    full = result["full"]["runs"]
    assert "same_as" not in full["project_autograd_embedding"] and "same_as" not in full["reference"]
    assert runs["project_autograd_embedding"]["same_as"] == "project"
    assert seen == [True, False, False, False]  # embedding trains? full: project; LoRA: reference, project, masks


def test_learning_check_compares_each_run_with_the_untuned_base_on_its_training_task(tmp_path):
    from handmade import write_squad_study_core

    write_squad_study_core(tmp_path)
    rows = {r["config"]: r for r in study_runs.learning_check(tmp_path)}
    # in-domain rows only, bases excluded
    assert set(rows) == {"tiny-Qwen3 Full FT (SQuAD v2)", "tiny-Qwen3 LoRA r8 (SQuAD v2)"}
    full, lora = rows["tiny-Qwen3 Full FT (SQuAD v2)"], rows["tiny-Qwen3 LoRA r8 (SQuAD v2)"]
    assert full["task"] == "squad_v2" and full["n"] == 40
    assert (full["loss_first"], full["loss_last"]) == (2.0, 1.5)
    # every item right against the base's 10 of 40: beyond the interval; LoRA's 8 of 40 is not
    assert full["learned"] is True and full["ci_low"] > 0 and full["verdict"] == "a better"
    assert lora["learned"] is False and lora["verdict"] != "a better"
