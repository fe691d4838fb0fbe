"""The evaluation engines (`eval_backend`): which one `auto` picks, the same replies from both,
and an evaluation that names its engine and scores every item with it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from peftlab.config import resolve_config
from peftlab.core.errors import ConfigError
from peftlab.models.loading import load_model
from peftlab.run.backends import PEFTLAB_AHEAD, choose_engine, continuous_batching_config, generate_continuous
from peftlab.run.evaluate import run_evaluation
from peftlab.run.generate import UnsupportedAttentionError, generate_batched

PROMPTS = [
    "The capital of France is",
    "Hi",
    "Which gas do plants take in, and which do they give off during photosynthesis?",
    "Solve for x: 3x + 5 = 20. Put the answer in a box.",
    "List three prime numbers:",
]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer, _ = load_model(base_model="tiny", dtype="float32", device="cpu")
    return model, tokenizer


def _qwen3(**changes):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, **changes,
    )  # fmt: skip
    return Qwen3ForCausalLM(config)


SLIDING = dict(layer_types=["full_attention", "sliding_attention"], sliding_window=8, use_sliding_window=True)


def test_auto_takes_the_batched_decoder_only_where_it_was_measured_ahead(tiny, monkeypatch):
    model, _ = tiny
    engine = choose_engine("auto", model)
    assert engine.name == "peftlab" and engine.setting == "auto"
    assert "cpu" in engine.reason and PEFTLAB_AHEAD["cpu"] in engine.reason
    # a device kind without a measurement gets the library's engine, and says why
    monkeypatch.delitem(PEFTLAB_AHEAD, "cpu")
    engine = choose_engine("auto", model)
    assert engine.name == "transformers" and "no benchmark shows the batched decoder ahead on cpu" in engine.reason


def test_auto_takes_the_library_for_attention_the_batched_decoder_does_not_support():
    model = _qwen3(**SLIDING)
    engine = choose_engine("auto", model)
    assert engine.name == "transformers" and "sliding_attention" in engine.reason
    with pytest.raises(UnsupportedAttentionError, match="full causal attention in every layer"):
        choose_engine("peftlab", model)
    assert choose_engine("transformers", model).name == "transformers"


def test_a_wrong_setting_names_the_allowed_ones(tiny):
    with pytest.raises(ConfigError, match="eval_backend.*auto.*peftlab.*transformers"):
        resolve_config(overrides={"eval_backend": "vllm"})
    with pytest.raises(ValueError, match="allowed: auto, peftlab, transformers"):
        choose_engine("vllm", tiny[0])


def test_continuous_batching_gives_the_batched_decoders_replies_in_input_order(tiny):
    model, tokenizer = tiny
    ours = generate_batched(model, tokenizer, PROMPTS, max_new_tokens=12, batch_size=2)
    theirs = generate_continuous(model, tokenizer, PROMPTS, max_new_tokens=12, batch_size=2)
    assert [r["reply"] for r in theirs] == [r["reply"] for r in ours]
    assert [r["tokens_generated"] for r in theirs] == [r["tokens_generated"] for r in ours]
    assert all(r["seconds"] > 0 for r in theirs)
    assert model.config._attn_implementation == "sdpa"  # the library puts the model back
    assert generate_continuous(model, tokenizer, [], max_new_tokens=4, batch_size=2) == []


def test_the_continuous_batching_cache_is_sized_for_the_workload_not_the_machine():
    """Left to itself the library sizes the cache from free memory: on a CPU, the RAM."""
    config = continuous_batching_config([[1] * 300, [1] * 100], max_new_tokens=200, batch_size=64)
    assert config.max_requests_per_batch == 2
    # 2 requests x 500 tokens in 256-token pages, plus a page each for rounding
    assert config.num_blocks == 4 + 2 and config.allow_block_sharing


@pytest.mark.parametrize("backend, engine", [("transformers", "transformers"), ("auto", "peftlab")])
def test_an_evaluation_scores_every_item_with_one_engine_and_names_it(tmp_path, backend, engine):
    config = resolve_config(
        overrides=dict(
            base_model="tiny", eval_tasks=["arc"], n_eval=5, max_new_tokens=8, eval_batch_size=4, n_latency=2,
            eval_backend=backend, out_dir=str(tmp_path / "run"),
        )
    )  # fmt: skip
    record = run_evaluation(config=config)["arc"]
    assert record["eval_backend"]["name"] == engine and record["eval_backend"]["setting"] == backend
    assert record["throughput"]["engine"] == engine and record["throughput"]["items"] == 5
    items = pd.read_parquet(Path(config["out_dir"]) / "items-arc.parquet")
    assert (items["reply_from"] == engine).all()
    timed = items["latency_s"].notna()
    assert timed.sum() == 2 and items.loc[timed, "latency_reply_same"].notna().all()
    assert items.loc[~timed, "latency_reply_same"].isna().all()
    assert record["latency_reply_same_share"] == pytest.approx(items.loc[timed, "latency_reply_same"].mean())


def test_the_engine_is_part_of_an_evaluations_identity(tmp_path):
    from peftlab.run.evaluate import eval_hash, model_identity

    identity = model_identity(base_model="tiny", run_dir=None)
    hashes = {
        backend: eval_hash(resolve_config(overrides={"base_model": "tiny", "eval_backend": backend}), "arc", identity)
        for backend in ("auto", "peftlab", "transformers")
    }
    assert len(set(hashes.values())) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_takes_the_library_on_a_gpu():
    model, _, _ = load_model(base_model="tiny", dtype="float32", device="cuda")
    assert "cuda" not in PEFTLAB_AHEAD and choose_engine("auto", model).name == "transformers"


def test_the_benchmark_sets_both_engines_side_by_side_round_by_round():
    """`bench/benchmark.py --only eval`'s continuous-batching variant: items/s with its range over
    interleaved rounds, the identical-reply share, and whether `auto` picks the faster engine."""
    import sys

    from peftlab.core.paths import repo_root

    sys.path.insert(0, str(repo_root()))
    from bench.evaluation import VARIANTS, bench_eval, eval_summary

    variants = {name: VARIANTS[name] for name in ("batched", "transformers_continuous")}
    result = bench_eval(
        base_model="tiny", sizes=[3], device="cpu", dtype="float32", batch_size=2, max_new_tokens=6,
        variants=variants, repeats=2,
    )[3]  # fmt: skip
    continuous = result["variants"]["transformers_continuous"]
    assert len(continuous["wall_s_runs"]) == 2 and continuous["identical_reply_share"] == 1.0
    low, high = continuous["items_per_s_range"]
    assert low <= continuous["items_per_s"] <= high
    engines = result["engines"]
    assert engines["auto_chooses"] == "peftlab" and len(engines["peftlab_over_transformers_range"]) == 2
    summary = eval_summary(result)
    assert summary["eval_identical_reply_share_transformers_continuous_3"] == 1.0
    assert set(summary["eval_items_per_s_3"]) == set(variants) and summary["eval_engines_3"] is engines


def test_the_reports_provenance_names_each_evaluations_engine(tmp_path):
    import json

    from peftlab.analysis.study_records import provenance

    meta = {"versions": {"torch": "2.13.0"}, "git": {"commit": "abc", "dirty": False}, "device": "cpu"}
    for run, engine in (("base", "peftlab"), ("lora", "transformers")):
        (tmp_path / "runs" / run).mkdir(parents=True)
        record = {"kind": "eval", "meta": meta, "eval_backend": {"name": engine, "setting": "auto", "reason": "x"}}
        (tmp_path / "runs" / run / "eval-arc.json").write_text(json.dumps(record))
    (tmp_path / "runs" / "lora" / "train.json").write_text(json.dumps({"kind": "train", "meta": meta}))
    frame = provenance(study_dir=str(tmp_path))
    engines = dict(zip(frame["what"], frame["engine"]))
    assert engines["base/eval-arc.json"] == "peftlab" and engines["lora/eval-arc.json"] == "transformers"
    assert pd.isna(engines["report"])  # the report itself decodes nothing
