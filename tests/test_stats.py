"""Report statistics: Pareto fronts, paired bootstraps and seed aggregation (expected values by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from peftlab.stats import (
    aggregate_seeds,
    bootstrap_ci,
    paired_bootstrap_diff,
    paired_bootstrap_metric,
    pareto_front,
)

# --------------------------------------------------------------------------------------
# Pareto fronts
# --------------------------------------------------------------------------------------


def _front(df: pd.DataFrame, objectives: dict[str, bool]) -> list[str]:
    mask = pareto_front(df, objectives)
    assert mask.dtype == bool
    assert mask.index.equals(df.index)
    return [str(i) for i in df.index[mask.to_numpy()]]


def test_pareto_2d_dominated_on_both_axes():
    # b (2, 2) beats a (1, 1) on both axes; c and d trade off against b.
    df = pd.DataFrame({"x": [1, 2, 3, 0], "y": [1, 2, 0, 3]}, index=["a", "b", "c", "d"])
    assert _front(df, {"x": True, "y": True}) == ["b", "c", "d"]


def test_pareto_2d_worse_on_one_equal_on_other_is_dominated():
    df = pd.DataFrame({"x": [2, 2], "y": [1, 2]}, index=["a", "b"])
    assert _front(df, {"x": True, "y": True}) == ["b"]


def test_pareto_identical_points_both_stay():
    df = pd.DataFrame({"x": [1.0, 1.0, 0.0], "y": [1.0, 1.0, 0.0]}, index=["a", "b", "c"])
    assert _front(df, {"x": True, "y": True}) == ["a", "b"]


def test_pareto_single_row_and_empty():
    one = pd.DataFrame({"acc": [0.4], "mem": [3.0]}, index=["only"])
    assert _front(one, {"acc": True, "mem": False}) == ["only"]
    empty = pd.DataFrame({"acc": [], "mem": []})
    out = pareto_front(empty, {"acc": True, "mem": False})
    assert len(out) == 0 and out.dtype == bool


def test_pareto_mixing_minimise_and_maximise():
    df = pd.DataFrame(
        {"acc": [0.8, 0.8, 0.9, 0.7, 0.85], "mem": [10, 12, 20, 5, 25]},
        index=["m1", "m2", "m3", "m4", "m5"],
    )
    # accuracy up, memory down: m2 loses to m1 (same accuracy, more memory), m5 to m3.
    assert _front(df, {"acc": True, "mem": False}) == ["m1", "m3", "m4"]
    # both up: m5 (0.85, 25) beats m1, m2 and m4; m3 keeps the best accuracy.
    assert _front(df, {"acc": True, "mem": True}) == ["m3", "m5"]
    # both down: m4 (0.7, 5) beats everything.
    assert _front(df, {"acc": False, "mem": False}) == ["m4"]


def test_pareto_third_objective_can_rescue_a_point():
    df = pd.DataFrame(
        {"acc": [0.9, 0.8], "mem": [10.0, 12.0], "time": [100.0, 50.0]},
        index=["p", "q"],
    )
    assert _front(df, {"acc": True, "mem": False}) == ["p"]
    assert _front(df, {"acc": True, "mem": False, "time": False}) == ["p", "q"]
    # with time maximised instead, p is again better on all three.
    assert _front(df, {"acc": True, "mem": False, "time": True}) == ["p"]


def test_pareto_one_objective():
    df = pd.DataFrame({"acc": [3, 1, 3]}, index=["a", "b", "c"])
    assert _front(df, {"acc": True}) == ["a", "c"]
    assert _front(df, {"acc": False}) == ["b"]


def test_pareto_nan_rows_are_off_the_front_and_dominate_nothing():
    df = pd.DataFrame(
        {
            "acc": [0.99, 0.5, 0.4, np.nan],
            "mem": [np.nan, 1.0, 2.0, 0.1],
            "note": [None, None, None, None],  # NaN outside the objectives does not matter
        },
        index=["nan_mem", "x", "y", "nan_acc"],
    )
    # nan_mem would dominate x and y, and nan_acc would dominate y; neither counts.
    assert _front(df, {"acc": True, "mem": False}) == ["x"]
    all_nan = pd.DataFrame({"acc": [np.nan], "mem": [1.0]})
    assert not pareto_front(all_nan, {"acc": True, "mem": False}).any()


def test_pareto_unsigned_column_minimised():
    df = pd.DataFrame({"acc": [0.5, 0.5], "params": np.array([10, 20], dtype=np.uint64)})
    assert pareto_front(df, {"acc": True, "params": False}).tolist() == [True, False]


def test_pareto_missing_column_raises():
    df = pd.DataFrame({"acc": [1.0]})
    with pytest.raises(ValueError, match="mem"):
        pareto_front(df, {"acc": True, "mem": False})
    with pytest.raises(ValueError):
        pareto_front(df, {})


# --------------------------------------------------------------------------------------
# Bootstrap intervals
# --------------------------------------------------------------------------------------


def test_bootstrap_ci_two_values_hand_worked():
    # Replicate means of [0, 1] are 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles of 2000 replicates are 0 and 1.
    res = bootstrap_ci([0.0, 1.0])
    assert res == {"estimate": 0.5, "low": 0.0, "high": 1.0, "n": 2}


def test_bootstrap_ci_constant_values_zero_width():
    res = bootstrap_ci([0.3] * 10)
    assert res["estimate"] == pytest.approx(0.3)
    assert res["low"] == pytest.approx(0.3) and res["high"] == pytest.approx(0.3)


def test_bootstrap_ci_statistics():
    med = bootstrap_ci([1.0, 2.0, 100.0], statistic="median")
    assert med["estimate"] == 2.0
    assert 1.0 <= med["low"] <= med["high"] <= 100.0
    top = bootstrap_ci([1.0, 2.0, 3.0], statistic=np.max)
    assert top["estimate"] == 3.0 and top["high"] == 3.0 and top["low"] >= 1.0
    # A callable computing the mean sees the same resampled indices as "mean".
    x = np.random.default_rng(1).normal(size=50)
    by_name = bootstrap_ci(x, n_boot=300, seed=5)
    by_callable = bootstrap_ci(x, statistic=lambda v: float(np.mean(v)), n_boot=300, seed=5)
    assert by_callable["low"] == pytest.approx(by_name["low"])
    assert by_callable["high"] == pytest.approx(by_name["high"])


def test_bootstrap_ci_drops_nan_and_reports_n():
    res = bootstrap_ci([1.0, np.nan, 3.0])
    assert res["n"] == 2 and res["estimate"] == 2.0


def test_bootstrap_ci_single_item_collapses():
    assert bootstrap_ci([0.7]) == {"estimate": 0.7, "low": 0.7, "high": 0.7, "n": 1}


def test_bootstrap_ci_empty_raises():
    with pytest.raises(ValueError, match="no items"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="no items"):
        bootstrap_ci([np.nan, np.nan])


def test_bootstrap_argument_checks():
    with pytest.raises(ValueError, match="statistic"):
        bootstrap_ci([1.0, 2.0], statistic="mode")
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap_diff([1.0], [1.0], n_boot=0)


def test_paired_constant_difference_zero_width_at_difference():
    b = np.random.default_rng(0).uniform(size=40)
    a = b + 0.25
    res = paired_bootstrap_diff(a, b)
    assert res["estimate"] == pytest.approx(0.25)
    assert res["low"] == pytest.approx(0.25) and res["high"] == pytest.approx(0.25)
    assert res["n"] == 40
    assert res["tie"] is False and res["better"] == "a"
    # lower-is-better scores (e.g. loss): the larger a is the worse model.
    assert paired_bootstrap_diff(a, b, higher_is_better=False)["better"] == "b"
    assert paired_bootstrap_diff(b, a)["better"] == "b"


def test_paired_clearly_better_model_is_not_a_tie():
    rng = np.random.default_rng(3)
    b = rng.normal(0.0, 1.0, size=200)
    a = b + 0.5 + rng.normal(0.0, 0.1, size=200)
    res = paired_bootstrap_diff(a, b)
    assert res["tie"] is False and res["better"] == "a"
    assert 0.4 < res["low"] < res["estimate"] < res["high"] < 0.6
    # The unpaired spread of a and b (sd 1) would swamp 0.5; pairing removes it.
    assert res["high"] - res["low"] < 0.1


def test_paired_identical_models_tie_at_zero():
    a = np.random.default_rng(4).uniform(size=30)
    res = paired_bootstrap_diff(a, a.copy(), statistic="median")
    assert res == {"estimate": 0.0, "low": 0.0, "high": 0.0, "n": 30, "tie": True, "better": "tie"}


def test_paired_seed_determinism():
    rng = np.random.default_rng(5)
    a = rng.uniform(size=25)
    b = rng.uniform(size=25)
    assert paired_bootstrap_diff(a, b, seed=11) == paired_bootstrap_diff(a, b, seed=11)
    assert paired_bootstrap_diff(a, b, seed=11)["low"] != paired_bootstrap_diff(a, b, seed=12)["low"]


def test_paired_single_item_collapses():
    res = paired_bootstrap_diff([0.9], [0.4])
    assert res["n"] == 1
    assert res["estimate"] == pytest.approx(0.5)
    assert res["low"] == res["high"] == res["estimate"]
    assert res["better"] == "a"


def test_paired_nan_items_dropped():
    # items 1 and 2 have a NaN on one side; items 0 and 3 remain: a = [1, 4], b = [0, 2].
    res = paired_bootstrap_diff([1.0, np.nan, 3.0, 4.0], [0.0, 1.0, np.nan, 2.0])
    assert res["n"] == 2
    assert res["estimate"] == pytest.approx(1.5)
    # Replicates: both items 0 -> 1, both items 3 -> 2, one of each -> 1.5.
    assert res["low"] == pytest.approx(1.0) and res["high"] == pytest.approx(2.0)


def test_paired_length_mismatch_and_empty_raise():
    with pytest.raises(ValueError, match="lengths 3 and 2"):
        paired_bootstrap_diff([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no items"):
        paired_bootstrap_diff([], [])
    with pytest.raises(ValueError, match="no items"):
        paired_bootstrap_diff([np.nan, 1.0], [1.0, np.nan])


# --------------------------------------------------------------------------------------
# Corpus-level metrics
# --------------------------------------------------------------------------------------


def macro_f1(frame: pd.DataFrame) -> float:
    """Macro-F1 over the letters seen in gold or pred."""
    scores = []
    for letter in sorted(set(frame["gold"]) | set(frame["pred"])):
        tp = int(((frame["pred"] == letter) & (frame["gold"] == letter)).sum())
        fp = int(((frame["pred"] == letter) & (frame["gold"] != letter)).sum())
        fn = int(((frame["pred"] != letter) & (frame["gold"] == letter)).sum())
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def test_paired_metric_aligns_on_ids_hand_worked():
    items_a = pd.DataFrame({"id": [1, 2, 3, 4], "gold": list("ABAB"), "pred": list("ABAB")})
    # b in a different row order, with id 5 absent from a and id 1 absent from b.
    items_b = pd.DataFrame({"id": [4, 5, 3, 2], "gold": list("BAAB"), "pred": list("BBAA")})
    res = paired_bootstrap_metric(items_a, items_b, macro_f1, n_boot=300)
    # Shared ids 2, 3, 4. a is perfect (1.0). b: id 2 gold B pred A, id 3 A/A, id 4 B/B:
    # F1(A) = 2*1/(2+1+0) = 2/3, F1(B) = 2*1/(2+0+1) = 2/3, macro 2/3.
    assert res["n"] == 3
    assert res["estimate"] == pytest.approx(1 / 3)
    # A replicate without id 2 (probability (2/3)^3 = 8/27) makes b perfect: difference 0,
    # so the 2.5% quantile is 0 and the interval contains 0.
    assert res["low"] == pytest.approx(0.0)
    assert 1 / 3 < res["high"] <= 1.0
    assert res["tie"] is True and res["better"] == "tie"
    assert paired_bootstrap_metric(items_a, items_b, macro_f1, n_boot=300) == res


def test_paired_metric_clear_winner_and_direction():
    ids = list(range(20))
    gold = list("AB" * 10)
    wrong = ["B" if g == "A" else "A" for g in gold]
    items_a = pd.DataFrame({"id": ids, "gold": gold, "pred": gold})
    items_b = pd.DataFrame({"id": ids[::-1], "gold": gold[::-1], "pred": wrong[::-1]})
    # a is always 1, b is always 0 on any resample: zero-width interval at 1.
    res = paired_bootstrap_metric(items_a, items_b, macro_f1, n_boot=50)
    assert res == {"estimate": 1.0, "low": 1.0, "high": 1.0, "n": 20, "tie": False, "better": "a"}
    res_low = paired_bootstrap_metric(items_a, items_b, macro_f1, n_boot=50, higher_is_better=False)
    assert res_low["better"] == "b"


def test_paired_metric_custom_key_single_item_and_errors():
    a = pd.DataFrame({"qid": ["x", "y"], "gold": ["A", "B"], "pred": ["A", "B"]})
    b = pd.DataFrame({"qid": ["y"], "gold": ["B"], "pred": ["A"]})
    res = paired_bootstrap_metric(a, b, macro_f1, key="qid")
    assert res["n"] == 1 and res["estimate"] == 1.0 and res["low"] == res["high"] == 1.0
    with pytest.raises(ValueError, match="'id'"):
        paired_bootstrap_metric(a, b, macro_f1)
    with pytest.raises(ValueError, match="share no"):
        paired_bootstrap_metric(a, b.assign(qid=["z"]), macro_f1, key="qid")
    with pytest.raises(ValueError, match="duplicate"):
        paired_bootstrap_metric(pd.concat([a, a]), b, macro_f1, key="qid")


# --------------------------------------------------------------------------------------
# Seed aggregation
# --------------------------------------------------------------------------------------


def test_aggregate_seeds_one_and_three_seeds():
    df = pd.DataFrame(
        {
            "method": ["lora", "lora", "lora", "full"],
            "task": ["arc"] * 4,
            "seed": [0, 1, 2, 0],
            "acc": [0.5, 0.6, 0.7, 0.8],
            "loss": [1.0, 2.0, 6.0, 0.5],
        }
    )
    out = aggregate_seeds(df, ["method", "task"], ["acc", "loss"])
    assert list(out.columns) == [
        "method",
        "task",
        "acc",
        "acc_std",
        "acc_min",
        "acc_max",
        "loss",
        "loss_std",
        "loss_min",
        "loss_max",
        "n_seeds",
    ]
    assert out["method"].tolist() == ["full", "lora"]
    full = out.iloc[0]
    assert full["acc"] == pytest.approx(0.8) and math.isnan(full["acc_std"])
    assert full["acc_min"] == full["acc_max"] == pytest.approx(0.8)
    assert full["n_seeds"] == 1
    lora = out.iloc[1]
    # acc: mean 0.6, sample std sqrt((0.01 + 0 + 0.01) / 2) = 0.1.
    assert lora["acc"] == pytest.approx(0.6) and lora["acc_std"] == pytest.approx(0.1)
    assert lora["acc_min"] == pytest.approx(0.5) and lora["acc_max"] == pytest.approx(0.7)
    # loss: mean 3, deviations -2, -1, 3 -> sample variance 14 / 2 = 7.
    assert lora["loss"] == pytest.approx(3.0) and lora["loss_std"] == pytest.approx(math.sqrt(7))
    assert lora["loss_min"] == 1.0 and lora["loss_max"] == 6.0
    assert lora["n_seeds"] == 3


def test_aggregate_seeds_errors():
    df = pd.DataFrame({"method": ["lora"], "acc": [0.5]})
    with pytest.raises(ValueError, match="loss"):
        aggregate_seeds(df, ["method"], ["loss"])
    with pytest.raises(ValueError, match="both group and value"):
        aggregate_seeds(df, ["method"], ["method"])
