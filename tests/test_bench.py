"""The benchmark's helpers on hand-made inputs, and its prefix, training and scale parts on the tiny model."""

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
from bench.scale import MIN_NEW_TOKENS, StepClock, bench_scale, scale_summary, time_decode  # noqa: E402
from bench.training import compare_layouts, compare_levers, lever_verdict, round_order, train_summary  # noqa: E402


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
    return {
        "speedup": speedup,
        "speedup_range": [speedup * 0.9, speedup * 1.1],
        "items_per_s": speedup / 10,
        "identical_parsed_share": share,
        "identical_reply_share": share,
        "goal_met": False,
    }


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
    assert keys["eval_speedup_range_200"] == [5.4, 6.6000000000000005]
    assert keys["eval_items_per_s_200"] == {
        "batched": 0.6,
        "batched_dynamic_cache": 0.3,
        "batched_stop_at_first_box": 0.7,
    }
    assert eval_summary({**result, "items": 60})["eval_speedup"] == 6.0


def test_agreement_reads_the_first_box_as_the_reference_scoring_does():
    ref = [{"reply": "so \\boxed{7} or \\boxed{8}"}, {"reply": "no box"}, {"reply": "\\boxed{B}"}]
    got = [{"reply": "so \\boxed{7}"}, {"reply": "still no box"}, {"reply": "\\boxed{C}"}]
    agreement = compare(ref, got)
    assert agreement["identical_parsed_share"] == pytest.approx(2 / 3)
    assert agreement["identical_reply_share"] == 0
    assert agreement["differing_items"] == [2]


def test_layouts_compared_round_by_round_with_the_same_rounds_reference():
    # the machine slows down in round 2: every layout's speed falls, its paired ratio does not
    runs = {
        "reference": {
            "tokens_per_s": [100.0, 50.0, 80.0],
            "final_loss": 1.00,
            "memory": {"peak_rss_gb": 2.0, "label": "rss"},
        },
        "project": {"tokens_per_s": [150.0, 80.0, 100.0], "final_loss": 1.01, "memory": {"peak_rss_gb": 9.0}},
        "batch1_accum8": {"tokens_per_s": [130.0, None, 96.0], "final_loss": 0.995, "memory": {"peak_rss_gb": 2.5}},
        "project_bf16": {
            "tokens_per_s": [200.0, 100.0, 160.0],
            "final_loss": 1.05,
            "memory": {"peak_reserved_gb": 4.0},
        },
    }
    result = compare_layouts(runs)
    layouts = result["layouts"]
    assert layouts["reference"]["speedups"] == [1.0, 1.0, 1.0] and layouts["reference"]["final_loss_rel_diff"] == 0
    project = layouts["project"]
    assert project["speedups"] == pytest.approx([1.5, 1.6, 1.25])
    assert (project["speedup"], project["speedup_min"], project["speedup_max"]) == pytest.approx((1.5, 1.25, 1.6))
    assert project["tokens_per_s"] == [150.0, 80.0, 100.0]
    # a failed round (None) has no ratio; the median and range are over the rounds that ran
    assert layouts["batch1_accum8"]["speedups"] == pytest.approx([1.3, None, 1.2])
    assert layouts["batch1_accum8"]["speedup"] == pytest.approx(1.25)
    assert project["loss_equivalent"] and not layouts["project_bf16"]["loss_equivalent"]
    assert layouts["project_bf16"]["peak_memory_gb"] == 4.0 and project["peak_memory_gb"] == 9.0
    # the fastest by median among the layouts with the reference's loss
    assert result["fastest_loss_equivalent"] == "project"
    assert result["fastest_loss_equivalent_speedup"] == pytest.approx(1.5)


def test_a_lever_pays_only_when_its_whole_range_lies_above_one():
    pays = lever_verdict([1.2, 1.1, 1.3])
    assert pays["pays"] and (pays["median"], pays["min"], pays["max"]) == pytest.approx((1.2, 1.1, 1.3))
    assert pays["verdict"] == "pays (median 1.20×, range 1.10–1.30×)"
    straddles = lever_verdict([1.08, 0.97, 1.02])
    assert not straddles["pays"] and straddles["median"] == pytest.approx(1.02)
    assert straddles["verdict"].startswith("does not pay on this machine: range includes 1.0")
    assert not lever_verdict([1.3, 1.0, 1.2])["pays"]  # a round at exactly 1.0 is in the range
    costs = lever_verdict([0.9, 0.8, None])
    assert not costs["pays"] and costs["verdict"].startswith("costs: median 0.85×") and costs["n"] == 2
    assert lever_verdict([None, None])["verdict"].startswith("not measured")


def test_levers_compare_the_project_with_each_lever_undone_round_by_round():
    project = {"tokens_per_s": [120.0, 90.0, 110.0]}
    runs = {
        "project": project,
        "project_checkpointed": {"tokens_per_s": [100.0, 60.0, 100.0]},  # 1.2, 1.5, 1.1: pays
        "project_all_positions": {"tokens_per_s": [110.0, 95.0, 100.0]},  # 1.09, 0.95, 1.1: not
        "project_bernoulli_masks": {**project, "same_as": "project"},  # full FT: no adapter dropout
    }
    levers = compare_levers(runs)
    assert levers["no_gradient_checkpointing"]["ratios"] == pytest.approx([1.2, 1.5, 1.1])
    assert levers["no_gradient_checkpointing"]["pays"] and not levers["labelled_positions_only"]["pays"]
    assert "range includes 1.0" in levers["labelled_positions_only"]["verdict"]
    assert levers["packed_dropout_masks"]["acts"] is False
    assert "embedding_grad_in_place" not in levers  # its layout was not run


def _fake_training(calls: list, tokens_per_s, fail=(), final_loss=lambda method, name, round_number: 1.0):
    """A stand-in for one training run: notes (method, layout, round) and returns
    tokens_per_s(method, layout, round) and final_loss(...); raises for the (method, layout,
    round) in `fail`."""

    def train_once(*, method, name, **kwargs):
        round_number = 1 + sum(call[:2] == (method, name) for call in calls)
        calls.append((method, name, round_number))
        if (method, name, round_number) in fail:
            raise RuntimeError("out of memory")
        return {
            "status": "ok",
            "layout": {"name": name},
            "train_s": 1.0,
            "tokens": 100,
            "tokens_per_s": tokens_per_s(method, name, round_number),
            "optimizer_steps": 1,
            "loss_curve": [2.0, 1.0],
            "final_loss": final_loss(method, name, round_number),
            "mfu": 0.1,
            "memory": {"peak_rss_gb": 1.0, "label": "rss"},
            "bf16_autocast": False,
        }

    return train_once


def test_training_rounds_interleave_with_the_variants_order_alternating(monkeypatch):
    from bench import training

    calls, progress = [], []
    drift = {1: 1.0, 2: 0.5, 3: 0.8}  # the machine's speed in each round
    base = {"reference": 100.0, "project": 150.0, "project_checkpointed": 120.0, "batch1_accum8": 150.0}

    def moved_loss(method, name, round_number):  # noted: training should be deterministic
        return 1.001 if (name, round_number) == ("project_checkpointed", 3) else 1.0

    fake = _fake_training(calls, lambda method, name, r: base[name] * drift[r], final_loss=moved_loss)
    monkeypatch.setattr(training, "_train_once", fake)
    names = ("reference", "project", "project_checkpointed", "batch1_accum8")
    result = training.bench_train(
        base_model="tiny",
        n_train=8,
        device="cpu",
        dtype="float32",
        peaks={},
        layouts={k: training.LAYOUTS[k] for k in names},
        methods=("lora",),
        repeats=3,
        progress=lambda r: progress.append((r["rounds_done"], r["complete"])),
    )
    # batch1_accum8 is the project's layout on a CPU: run once per round, under the project's name
    forward = ["reference", "project", "project_checkpointed"]
    backward = ["reference", "project_checkpointed", "project"]
    expected = [(n, 1) for n in forward] + [(n, 2) for n in backward] + [(n, 3) for n in forward]
    assert [(name, r) for _, name, r in calls] == expected
    assert round_order(["reference", "a", "b", "c"], 1) == ["reference", "c", "b", "a"]
    assert progress == [(1, False), (2, False), (3, True)]
    lora = result["methods"]["lora"]
    assert lora["runs"]["project"]["tokens_per_s"] == [150.0, 75.0, 120.0]
    assert lora["layouts"]["project"]["speedups"] == pytest.approx([1.5, 1.5, 1.5])  # the drift cancels
    assert lora["layouts"]["batch1_accum8"]["same_as"] == "project"
    assert lora["levers"]["no_gradient_checkpointing"]["verdict"] == "pays (median 1.25×, range 1.25–1.25×)"
    assert lora["runs"]["project"]["final_loss_identical_across_rounds"]
    checkpointed = lora["runs"]["project_checkpointed"]
    assert not checkpointed["final_loss_identical_across_rounds"] and checkpointed["final_loss"] == 1.0  # round 1's
    assert checkpointed["final_loss_per_round"] == [1.0, 1.0, 1.001]
    summary = train_summary(result)
    assert summary["train_speedup_lora"] == pytest.approx(1.5) and summary["train_repeats"] == 3
    assert summary["train_speedup_lora_range"] == pytest.approx([1.5, 1.5])
    assert summary["train_levers"]["lora"]["no_gradient_checkpointing"]["pays"] is True
    assert summary["train_goal_met"] == {"lora": True} and summary["train_failures"] == []
    assert summary["train_final_loss_identical_across_rounds"] == {"lora": False}
    assert isinstance(summary["cpu_model"], str) and summary["cpu_model"]


def _peak(device, **kwargs):
    return {"size": 1, "threads": 1, "flops": {"float32": 1e11, "bfloat16": 1e11}}


@pytest.fixture
def bench_main(tmp_path, monkeypatch):
    """bench/benchmark.py's main() writing into tmp_path, with a stand-in matmul peak."""
    from bench import benchmark, training

    monkeypatch.setattr(benchmark, "OUT", tmp_path)
    monkeypatch.setattr(training, "OUT", tmp_path)
    monkeypatch.setattr(benchmark, "matmul_peak", _peak)
    return benchmark


def test_a_failed_training_run_is_recorded_and_the_exit_status_is_1(bench_main, tmp_path, monkeypatch, capsys):
    from bench import training

    calls = []
    fail = {("lora", "project_checkpointed", 2)}
    monkeypatch.setattr(training, "_train_once", _fake_training(calls, lambda m, name, r: 100.0 + r, fail))
    monkeypatch.setattr(
        training, "LAYOUTS", {k: training.LAYOUTS[k] for k in ("reference", "project", "project_checkpointed")}
    )
    assert bench_main.main(["--only", "train", "--train-repeats", "2"]) == 1
    assert len(calls) == 12  # the other runs still ran
    assert "lora project_checkpointed round 2: RuntimeError" in capsys.readouterr().err
    written = json.loads((tmp_path / "train.json").read_text())
    lora = written["methods"]["lora"]
    assert lora["runs"]["project_checkpointed"]["errors"] == [
        {"round": 2, "type": "RuntimeError", "message": "out of memory"}
    ]
    assert lora["layouts"]["project_checkpointed"]["speedups"] == [1.0, None]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train_failures"] == ["lora project_checkpointed round 2: RuntimeError: out of memory"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "train", "--train-repeats", "0"], "argument --train-repeats: must be at least 1"),
        (["--only", "scale", "--scale-new-tokens", "2"], "argument --scale-new-tokens: must be at least 3"),
    ],
)
def test_too_few_repeats_or_new_tokens_are_refused_up_front(bench_main, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_main.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


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


def test_scale_decoding_times_a_step_from_its_minimum_of_new_tokens():
    from peftlab.models.loading import load_model

    model, tokenizer, _ = load_model(base_model="tiny", dtype="float32", device="cpu")
    timed = time_decode(model, tokenizer, ["Hi"], new_tokens=MIN_NEW_TOKENS)
    assert timed["decode_steps"] == 1 and timed["decode_s_per_token"] > 0
    # one token fewer: the first follows the prefill, the last is never stamped, no step between
    assert time_decode(model, tokenizer, ["Hi"], new_tokens=MIN_NEW_TOKENS - 1)["decode_s_per_token"] is None
    with pytest.raises(ValueError, match="at least 3"):
        bench_scale(device="cpu", new_tokens=MIN_NEW_TOKENS - 1)


SCALE_RUN_OK = {
    "status": "ok",
    "train": {
        "optimizer_steps": 2,
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
SCALE_RUN_FAILED = {"status": "failed", "error": {"type": "OutOfMemoryError", "message": "CUDA out of memory"}}


def _scale_result(runs: dict) -> dict:
    return {"base_model": "random:qwen3-0.6b", "device": "cpu", "sizes": {"dtype": "float32"}, "runs": runs}


def test_scale_summary_keeps_failed_methods_named():
    summary = scale_summary(_scale_result({"lora-r256": SCALE_RUN_OK, "full": SCALE_RUN_FAILED}))
    assert summary["lora-r256"]["decode_s_per_token_batch_4"] == 0.05
    assert summary["full"] == {"status": "failed", "error": "OutOfMemoryError"}


def test_the_exit_status_is_1_when_a_scale_method_fails(bench_main, monkeypatch, capsys):
    runs = {"lora-r256": SCALE_RUN_OK, "full": SCALE_RUN_FAILED}
    monkeypatch.setattr(bench_main, "bench_scale", lambda **kwargs: _scale_result(runs))
    assert bench_main.main(["--only", "scale"]) == 1
    assert "1 failed: scale full: OutOfMemoryError" in capsys.readouterr().err
    monkeypatch.setattr(bench_main, "bench_scale", lambda **kwargs: _scale_result({"lora-r256": SCALE_RUN_OK}))
    assert bench_main.main(["--only", "scale"]) == 0


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
        repeats=1,
    )
    result = result["methods"]
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
    assert all(run["tokens_per_s"][0] > 0 and not run["errors"] for run in runs.values())


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


def test_lever_memory_runs_each_training_in_a_fresh_process_alternating(tiny_config):
    """bench.lever_memory on a tiny full-FT job: per round one run with the in-place embedding
    gradient and one without, each in its own process, with the peak memory and speed paired."""
    from bench.lever_memory import measure

    config = tiny_config(method="full", n_train=4, batch_size=2, grad_accum=1)
    result = measure(config, job="tiny-full", repeats=2)
    assert result["repeats"] == 2 and result["job"] == "tiny-full"
    for lever in ("on", "undone"):
        runs = result["peak_rss_gb"][lever]["runs"]
        assert len(runs) == 2 and all(peak > 0 for peak in runs)
    saved = result["saved_gb"]
    assert saved["min"] <= saved["median"] <= saved["max"] and len(result["speedup"]["runs"]) == 2
    assert result["pays_in_memory"] == (saved["min"] > 0)
