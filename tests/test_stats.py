"""Report statistics: Pareto fronts, comparisons (cluster bootstrap, counts, Holm, power) and seed aggregation
(expected values by hand)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from peftlab.core.stats import (
    aggregate_seeds,
    cluster_bootstrap_diff,
    holm,
    macro_f1_from_counts,
    min_detectable,
    normal_test,
    pareto_front,
    proportion_diff,
    z_value,
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
# Comparisons: cluster bootstrap, counts, Holm, power
# --------------------------------------------------------------------------------------


def test_cluster_bootstrap_constant_shift_and_identical_models():
    a = np.arange(30, dtype=float)
    same = cluster_bootstrap_diff([a], [a], range(30), n_boot=500)
    assert same["estimate"] == 0 and same["se"] == 0 and same["n"] == 30
    shifted = cluster_bootstrap_diff([a + 2], [a], range(30), n_boot=500)
    assert shifted["estimate"] == pytest.approx(2) and shifted["se"] == pytest.approx(0)
    assert normal_test(shifted["estimate"], shifted["se"]) == 0 and normal_test(0.0, 0.0) == 1


def test_cluster_bootstrap_matches_the_analytic_paired_standard_error():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=400), rng.normal(size=400)
    got = cluster_bootstrap_diff([a], [b], range(400), n_boot=4000, seed=1)
    analytic = np.std(a - b, ddof=1) / np.sqrt(400)
    assert got["se"] == pytest.approx(analytic, rel=0.08)
    assert cluster_bootstrap_diff([a], [b], range(400), n_boot=300, seed=5) == cluster_bootstrap_diff(
        [a], [b], range(400), n_boot=300, seed=5
    )  # deterministic for a seed


def test_cluster_bootstrap_errors():
    with pytest.raises(ValueError, match="no shared items"):
        cluster_bootstrap_diff([np.array([])], [np.array([])], [])
    with pytest.raises(ValueError, match="items"):
        cluster_bootstrap_diff([np.ones(3)], [np.ones(4)], range(3))


def test_macro_f1_from_counts_both_rules_by_hand():
    # gold A predicted A twice, gold B predicted A once, gold B unparsed once
    counts = np.zeros((4, 5))
    counts[0, 0], counts[1, 0], counts[1, 4] = 2, 1, 1
    f1_a = 2 * (2 / 3) * 1 / (2 / 3 + 1)
    assert macro_f1_from_counts(counts, 4, fixed_classes=True) == pytest.approx(f1_a / 4)  # B's unparsed dropped
    assert macro_f1_from_counts(counts, 4, fixed_classes=False) == pytest.approx(f1_a / 4)
    five = np.zeros((5, 6))
    five[4, 4] = 1  # a fifth class, right once: averaged in only because it occurs
    assert macro_f1_from_counts(five, 5, fixed_classes=False) == pytest.approx(1 / 5)


def test_proportion_diff_agresti_caffo_by_hand():
    got = proportion_diff(15, 200, 0, 200)
    pa, pb = 16 / 202, 1 / 202
    assert got["estimate"] == pytest.approx(0.075) and got["center"] == pytest.approx(pa - pb)
    assert got["se"] == pytest.approx(math.sqrt(pa * (1 - pa) / 202 + pb * (1 - pb) / 202))
    with pytest.raises(ValueError):
        proportion_diff(1, 0, 1, 10)


def test_holm_by_hand():
    adjusted, divisors = holm([0.01, 0.04, 0.03, float("nan"), 0.5])
    assert adjusted[[0, 1, 2, 4]] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert math.isnan(adjusted[3]) and list(divisors[[0, 2, 1, 4]]) == [4, 3, 2, 1]


def test_power_and_critical_values():
    assert z_value(0.95) == pytest.approx(1.959964, rel=1e-6)
    assert min_detectable(1.0) == pytest.approx(1.959964 + 0.841621, rel=1e-6)
    assert math.isnan(min_detectable(float("nan")))


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
