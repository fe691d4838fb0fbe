"""How the nine answers are decided, on hand-made records: one item set per comparison, every
item counted, seeds and shared passages resampled together, a minimum n, Holm within a
question, timing noise, memory, failed runs, and questions.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from handmade import CPU_EVAL, N, mask, write_model, write_squad_dora_r8, write_squad_study_core
from peftlab.analysis.comparisons import Analysis
from peftlab.analysis.questions import STATUSES, answer_questions, write_questions
from peftlab.analysis.study_records import load_study
from peftlab.analysis.table1 import table1
from peftlab.core.stats import cluster_bootstrap_diff


def answers_of(out, **kw) -> dict:
    return {a["id"]: a for a in answer_questions(load_study(out), n_boot=400, **kw)}


def outcome(n_right: int, n_unparsed: int = 0, n: int = N) -> list:
    """n_right right answers, then n_unparsed replies without a box, the rest wrong."""
    return [True] * n_right + [None] * n_unparsed + [False] * (n - n_right - n_unparsed)


# --- 1 and 2: OpenMath counts every item; one item set per comparison -----------------------


def test_openmath_efficacy_counts_unparsed_replies_as_wrong(tmp_path):
    """A model that boxes 3 answers, all near misses, has a small AbsDiff over parsed replies but 0 %
    accuracy: it must lose to a model that is right on 30 % of the items."""
    out = tmp_path / "s"
    near_miss = [False] * 3 + [None] * (N - 3)  # wrong by 3, boxed on 3 items only
    write_model(out, "base-tiny", correct=mask(0))
    write_model(
        out,
        "openmath-full-s0",
        method="full",
        train_task="openmath",
        seed=0,
        correct={"arc": mask(10), "openmath": near_miss, "squad_v2": mask(10)},
    )
    write_model(
        out,
        "openmath-lora-r8-s0",
        method="lora",
        rank=8,
        train_task="openmath",
        seed=0,
        correct={"arc": mask(10), "openmath": [True] * 12 + [False] * (N - 12), "squad_v2": mask(10)},
    )
    records = load_study(out)
    row = table1(records).set_index("method").loc["Full FT"]
    assert row["openmath_absdiff"] == pytest.approx(3.0) and row["openmath_n_parsed"] == 3 and row["openmath_n"] == N
    assert row["openmath_accuracy"] == 0.0
    an = Analysis(records, n_boot=400)
    c = an.compare("tiny-Qwen3 LoRA r8 (OpenMath)", "tiny-Qwen3 Full FT (OpenMath)", "openmath")
    assert c["metric"] == "openmath_flex_accuracy" and c["n"] == N and c["diff"] == pytest.approx(30.0)
    q8 = answers_of(out)["Q8"]
    quality = q8["comparisons"][q8["comparisons"]["metric"] != "latency_s"].iloc[0]
    assert quality["verdict"] == "b better" and quality["metric"] == "openmath_flex_accuracy"
    assert "absdiff" not in " ".join(q8["comparisons"]["metric"].dropna())


def test_math_verify_column_in_table1(tmp_path):
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(10))
    row = table1(load_study(out)).iloc[0]
    assert row["openmath_math_verify"] == pytest.approx(25.0) and row["openmath_accuracy"] == pytest.approx(25.0)


def test_paired_comparison_uses_one_item_set_for_both(tmp_path):
    """Unparsed on 30 of 40 items and equal elsewhere: the old reading (parsed items only) found it
    better; on one item set it is 75 points worse, n = 40."""
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(40))
    write_model(
        out,
        "openmath-full-s0",
        method="full",
        train_task="openmath",
        seed=0,
        correct={"arc": mask(40), "openmath": outcome(10, 30), "squad_v2": mask(40)},
    )
    an = Analysis(load_study(out), n_boot=400)
    c = an.compare("tiny-Qwen3 Full FT (OpenMath)", "tiny-Qwen3 untuned", "openmath")
    assert c["n"] == N and c["diff"] == pytest.approx(-75.0)


def test_items_scored_by_only_one_side_are_left_out_and_n_says_so(tmp_path):
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(20), tasks=("arc",))
    ids = [f"arc-{i}" for i in range(10, 40)] + [f"other-{i}" for i in range(10)]
    write_model(
        out, "squad_v2-full-s0", method="full", train_task="squad_v2", seed=0, correct=mask(20), ids=ids, tasks=("arc",)
    )
    c = Analysis(load_study(out), n_boot=200).compare("tiny-Qwen3 Full FT (SQuAD v2)", "tiny-Qwen3 untuned", "arc")
    assert c["n"] == 30


# --- 3: seeds and shared passages are clusters ----------------------------------------------


def test_seeds_are_not_extra_items():
    rng = np.random.default_rng(1)
    a, b = (rng.random(200) < 0.6).astype(float), (rng.random(200) < 0.5).astype(float)
    one = cluster_bootstrap_diff([a], [b], range(200), n_boot=2000, seed=3)
    three = cluster_bootstrap_diff([a, a, a], [b], range(200), n_boot=2000, seed=3)
    assert three["se"] == pytest.approx(one["se"]) and three["n"] == 200
    stacked_se = np.sqrt(np.var(np.r_[a, a, a]) / 600 + np.var(b) / 200)  # seeds read as 600 items
    assert one["se"] > 1.2 * stacked_se


def test_questions_on_one_passage_move_together():
    rng = np.random.default_rng(2)
    per_passage = (rng.random(25) < 0.5).astype(float)
    a = np.repeat(per_passage, 4)  # 4 questions per passage, same outcome
    b = np.zeros(100)
    clustered = cluster_bootstrap_diff([a], [b], np.repeat(np.arange(25), 4), n_boot=2000)
    independent = cluster_bootstrap_diff([a], [b], np.arange(100), n_boot=2000)
    assert clustered["n_clusters"] == 25 and clustered["n"] == 100
    assert clustered["se"] > 1.6 * independent["se"]


def test_squad_clusters_from_the_items_file(tmp_path):
    out = tmp_path / "s"
    clusters = [f"passage-{i // 4}" for i in range(N)]
    write_model(out, "base-tiny", correct=mask(10), clusters=clusters, tasks=("squad_v2",))
    write_model(
        out,
        "squad_v2-full-s0",
        method="full",
        train_task="squad_v2",
        seed=0,
        correct=mask(30),
        clusters=clusters,
        tasks=("squad_v2",),
    )
    c = Analysis(load_study(out), n_boot=200).compare("tiny-Qwen3 Full FT (SQuAD v2)", "tiny-Qwen3 untuned", "squad_v2")
    assert c["n"] == N and c["n_clusters"] == N // 4


# --- 4 and 14: a minimum n; ties say what they could detect ---------------------------------


@pytest.mark.parametrize("n", [1, 3, 19])
def test_tiny_samples_are_insufficient_never_a_win(tmp_path, n):
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(0, n=n), n=n)
    write_model(out, "squad_v2-full-s0", method="full", train_task="squad_v2", seed=0, correct=mask(n, n=n), n=n)
    write_model(
        out, "squad_v2-lora-r8-s0", method="lora", rank=8, train_task="squad_v2", seed=0, correct=mask(0, n=n), n=n
    )
    answers = answers_of(out)
    for a in answers.values():
        c = a["comparisons"]
        assert not c["decisive"].any()
        efficacy = c[c["metric"] != "latency_s"]
        assert (efficacy["verdict"] == "insufficient data").all() and efficacy["ci_low"].isna().all()
    assert answers["Q8"]["status"] == "insufficient data" and answers["Q8"]["agrees_with_reference"] is None


def test_a_tie_states_the_smallest_detectable_difference(tmp_path):
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(20))
    write_model(out, "squad_v2-full-s0", method="full", train_task="squad_v2", seed=0, correct=mask(21))
    write_model(out, "squad_v2-lora-r8-s0", method="lora", rank=8, train_task="squad_v2", seed=0, correct=mask(20))
    q8 = answers_of(out)["Q8"]
    tie = q8["comparisons"][q8["comparisons"]["metric"] == "squad_flex_f1"].iloc[0]
    assert tie["verdict"] == "tie" and 0 < tie["mde"] < 100
    assert f"no difference larger than {tie['mde']:.1f} points" in q8["answer"]


# --- 5: Holm within a question -----------------------------------------------------------


def test_holm_within_the_question_family(tmp_path):
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(20))
    write_model(out, "squad_v2-full-s0", method="full", train_task="squad_v2", seed=0, correct=mask(20))
    an = Analysis(load_study(out), n_boot=200)
    # raw p = 0.03 in a family of 10 is not decisive; p = 0.001 is (Holm: 0.001 * 10 = 0.01)
    base = {
        "a": "x",
        "b": "y",
        "task": "arc",
        "metric": "arc_accuracy",
        "n": 100,
        "n_clusters": 100,
        "a_value": 1.0,
        "b_value": 0.0,
        "method": "cluster bootstrap",
        "noise_rel": math.nan,
        "note": None,
    }
    z_003, z_0001 = 2.1700903775845606, 3.2905267314919255
    comps = [{**base, "diff": z_0001, "center": z_0001, "se": 1.0}] + [
        {**base, "diff": z_003, "center": z_003, "se": 1.0} for _ in range(9)
    ]
    frame = an.adjust(comps, "Qx")
    assert (frame["family_size"] == 10).all()
    assert frame["p"].iloc[1] == pytest.approx(0.03, rel=1e-3) and frame["p_adjusted"].iloc[1] > 0.05
    assert frame["decisive"].tolist() == [True] + [False] * 9
    assert frame["p_adjusted"].iloc[0] == pytest.approx(0.01, rel=1e-3)
    first = frame.iloc[0]  # tested at 0.05/10: the interval at that level excludes zero
    assert first["ci_low"] > 0 and first["ci_low"] < first["ci95_low"]


# --- 6: best sets and fronts read the intervals ---------------------------------------------


def test_best_is_a_set_when_the_top_does_not_stand_out(tmp_path):
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(5), latency=0.3)
    write_model(out, "squad_v2-full-s0", method="full", train_task="squad_v2", seed=0, correct=mask(30), latency=0.2)
    write_model(
        out, "squad_v2-lora-r8-s0", method="lora", rank=8, train_task="squad_v2", seed=0, correct=mask(29), latency=0.2
    )
    q1 = answers_of(out)["Q1"]
    best = q1["figures"][q1["figures"]["best_set"]]
    assert set(best["method"]) == {"Full FT", "LoRA"}
    assert q1["status"] == "tie" and q1["agrees_with_reference"] is None
    q9 = answers_of(out)["Q9"]["figures"]
    squad = q9[q9["task"] == "squad_v2"].set_index("config")
    assert squad.loc["tiny-Qwen3 LoRA r8 (SQuAD v2)", "front"] == "possibly non-dominated"
    assert squad.loc["tiny-Qwen3 untuned", "front"] == "dominated"


# --- 7: latency: tokens and timing noise ------------------------------------------------------


def test_latency_of_one_architecture_is_decided_by_generated_tokens(tmp_path):
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(20), latency=0.30, tokens=5)
    write_model(
        out,
        "squad_v2-lora-r8-s0",
        method="lora",
        rank=8,
        train_task="squad_v2",
        seed=0,
        correct=mask(20),
        latency=0.20,
        tokens=5,
    )  # same tokens, faster clock: timing noise
    write_model(
        out,
        "squad_v2-lora-r16-s0",
        method="lora",
        rank=16,
        train_task="squad_v2",
        seed=0,
        correct=mask(20),
        latency=0.40,
        tokens=np.arange(N) % 7 + 10,
    )
    an = Analysis(load_study(out), n_boot=400)
    same = an.adjust([an.compare("tiny-Qwen3 LoRA r8 (SQuAD v2)", "tiny-Qwen3 untuned", "arc", "latency_s")], "t")
    assert same["verdict"].iloc[0] == "tie" and same["diff"].iloc[0] == 0
    assert "measured difference -0.1" in same["note"].iloc[0]
    more = an.adjust(
        [an.compare("tiny-Qwen3 LoRA r16 (SQuAD v2)", "tiny-Qwen3 LoRA r8 (SQuAD v2)", "arc", "latency_s")], "t"
    )
    assert more["verdict"].iloc[0] == "b better" and more["diff"].iloc[0] > 0


def test_latency_across_architectures_needs_to_beat_the_timing_noise(tmp_path):
    out = tmp_path / "s"
    write_model(out, "base-small", correct=mask(20), latency=0.30, base_model="org/Small-1B", timing_noise_rel=0.2)
    write_model(
        out,
        "base-large",
        correct=mask(20),
        latency=0.33 + 0.001 * (np.arange(N) % 5),
        base_model="org/Large-2B",
        timing_noise_rel=0.2,
    )
    write_model(
        out,
        "base-huge",
        correct=mask(20),
        latency=0.9 + 0.001 * (np.arange(N) % 5),
        base_model="org/Huge-7B",
        timing_noise_rel=0.2,
    )
    an = Analysis(load_study(out), n_boot=400)
    close = an.adjust([an.compare("Large-2B untuned", "Small-1B untuned", "arc", "latency_s")], "t").iloc[0]
    assert close["p_adjusted"] < 0.05 and close["verdict"] == "tie" and "timing noise" in close["note"]
    far = an.adjust([an.compare("Huge-7B untuned", "Small-1B untuned", "arc", "latency_s")], "t").iloc[0]
    assert far["verdict"] == "b better"


# --- 8: memory -------------------------------------------------------------------------------


def cuda(reserved: float, allocated: float) -> dict:
    return {"device": "cuda", "peak_reserved_gb": reserved, "peak_allocated_gb": allocated, "label": "CUDA"}


def test_training_memory_caps_use_allocated_memory(tmp_path):
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(5), eval_memory=cuda(1.0, 0.9))
    # reserved says full FT is the lighter; allocated (what the study decided on) says VeRA is
    write_model(
        out,
        "squad_v2-full-s0",
        method="full",
        train_task="squad_v2",
        seed=0,
        correct=mask(39),
        eval_memory=cuda(1.0, 0.9),
        train_memory=cuda(4.0, 3.0),
    )
    write_model(
        out,
        "squad_v2-vera-r8-s0",
        method="vera",
        rank=8,
        train_task="squad_v2",
        seed=0,
        correct=mask(5),
        eval_memory=cuda(1.0, 0.9),
        train_memory=cuda(5.0, 1.0),
    )
    q6 = answers_of(out)["Q6"]
    hardest = q6["figures"].sort_values("cap_gb").iloc[0]
    assert hardest["cap_gb"] == 1.0 and hardest["top"] == "tiny-Qwen3 VeRA r8 (SQuAD v2)"
    assert "allocated" in q6["answer"]


def test_serving_memory_is_the_batch_one_peak(tmp_path):
    out = tmp_path / "s"
    write_model(out, "base-tiny", correct=mask(5), eval_memory=cuda(1.0, 0.9), batched_memory=cuda(6.0, 5.0))
    records = load_study(out)
    assert table1(records)["eval_res_gb"].iloc[0] == 1.0
    assert (records.evals["eval_batched_gb"] == 6.0).all()


# --- 9 and 10: questions as the study posed them; failed runs -------------------------------


@pytest.fixture
def study(tmp_path):
    out = tmp_path / "study"
    write_squad_study_core(out)
    write_model(
        out,
        "squad_v2-lora-r8-s1",
        method="lora",
        rank=8,
        train_task="squad_v2",
        seed=1,
        correct=mask(12, offset=5),
        latency=0.22,
        tokens=8,
    )
    write_squad_dora_r8(out)
    write_model(out, "openmath-lora-r8-s0", method="lora", rank=8, train_task="openmath", seed=0, correct=mask(25))
    write_model(out, "openmath-full-s0", method="full", train_task="openmath", seed=0, failed=True)
    return out


def test_questions_scoped_as_the_study_posed_them(study):
    answers = answers_of(study)
    q2 = answers["Q2"]["comparisons"]
    larger = q2[q2["b"] == "Big-7B untuned"]
    assert set(larger["task"]) == {"arc", "openmath", "squad_v2"}  # the larger base across tasks
    q7 = answers["Q7"]["comparisons"]
    train_task = {
        "tiny-Qwen3 LoRA r8 (SQuAD v2)": "squad_v2",
        "tiny-Qwen3 DoRA r8 (SQuAD v2)": "squad_v2",
        "tiny-Qwen3 LoRA r8 (OpenMath)": "openmath",
    }
    assert all(train_task[a] == t for a, t in zip(q7["a"], q7["task"]))  # in-domain only
    q8 = answers["Q8"]["comparisons"]
    assert {"squad_flex_f1", "latency_s"} <= set(q8["metric"])  # the quality half and the speed half


def test_failed_candidates_are_named(study):
    answers = answers_of(study)
    assert "full FT on OpenMath failed" in answers["Q8"]["answer"]
    assert "full FT on OpenMath failed" in answers["Q2"]["answer"]
    assert "tiny-Qwen3 Full FT (OpenMath)" in answers["Q1"]["answer"]


def test_questions_json(study, tmp_path):
    answers = answer_questions(load_study(study), n_boot=400)
    path = write_questions(answers, tmp_path / "questions.json")
    data = json.loads(path.read_text())
    assert [q["id"] for q in data] == [f"Q{i}" for i in range(1, 10)]
    for q in data:
        assert q["status"] in STATUSES and isinstance(q["answer"], str) and q["answer"]
        assert q["agrees_with_reference"] in (True, False, None)
        for c in q["comparisons"]:
            assert {"a", "b", "task", "metric", "n", "diff", "ci_low", "ci_high", "p_adjusted"} <= set(c)
            assert c["metric"] != "openmath_absdiff"
            if c["verdict"] in ("a better", "b better"):
                assert c["n_clusters"] >= 20 and c["p_adjusted"] < 0.05
                assert c["ci_low"] > 0 or c["ci_high"] < 0


def test_rank_plot_draws_seed_error_bars(study):
    import matplotlib

    matplotlib.use("Agg")
    from peftlab.analysis.comparisons import configurations
    from peftlab.report.plots import plot_pareto, plot_rank

    records = load_study(study)
    fig = plot_rank(records.evals)
    bars = [
        segment
        for ax in fig.axes
        for c in ax.collections
        if hasattr(c, "get_segments")
        for segment in c.get_segments()
        if len(segment) == 2 and segment[0][1] != segment[1][1]
    ]
    assert bars, "no error bar for the configuration with two seeds"
    configs = configurations(records=records)
    fig = plot_pareto(configs)
    points = sum(len(c.get_offsets()) for ax in fig.axes for c in ax.collections)
    assert points >= len(configs)  # one point per configuration and task, seeds averaged
    assert not pd.isna(configs["score"]).all() and set(CPU_EVAL) >= {"device"}
