"""Statistics used by the study's report: Pareto fronts, seed aggregation, and the comparisons the
questions decide on (cluster bootstrap, counts, Holm, power).

Only numpy and pandas are used, so the report can be rebuilt without loading a model.

Conventions
-----------
* A comparison is paired: both sides on the same items, the same clusters drawn for both in
  every replicate, so item difficulty cancels out.
* The bootstrap gives a standard error; intervals and p-values are normal-theory from it, so
  any level (a Holm step at 0.05/30) is as precise as 95 %.
* Every bootstrap is deterministic for a fixed ``seed`` (``numpy.random.default_rng``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

# Upper bound on the number of elements held by one block of resampled values (or one
# block of the pairwise dominance test), so large inputs do not exhaust memory.
_BLOCK_ELEMENTS = 4_000_000

# --------------------------------------------------------------------------------------
# Pareto fronts
# --------------------------------------------------------------------------------------


def pareto_front(df: pd.DataFrame, objectives: Mapping[str, bool]) -> pd.Series:
    """Mark the non-dominated rows of ``df``.

    ``objectives`` maps a column name to ``higher_is_better`` (True: maximise, False:
    minimise). Row A dominates row B when A is at least as good as B on every objective
    and strictly better on at least one. Rows identical on all objectives do not dominate
    each other, so all of them stay on the front. A row with NaN in any objective is
    never on the front and never dominates another row.

    Returns a boolean Series aligned to ``df.index`` (True: on the front), named "pareto".
    """
    if not objectives:
        raise ValueError("pareto_front needs at least one objective")
    missing = [c for c in objectives if c not in df.columns]
    if missing:
        raise ValueError(
            f"pareto_front: objective column(s) {missing} not in the frame; available columns: {list(df.columns)}"
        )
    for col, hib in objectives.items():
        if not isinstance(hib, (bool, np.bool_)):
            raise TypeError(f"pareto_front: objectives[{col!r}] must be a bool (higher_is_better), got {hib!r}")

    n = len(df)
    if n == 0:
        return pd.Series(np.zeros(0, dtype=bool), index=df.index, name="pareto")

    # Orient every objective so that larger is better; convert to float first so that
    # negation cannot wrap around for unsigned integer columns.
    columns = []
    for col, hib in objectives.items():
        try:
            values = pd.to_numeric(df[col], errors="raise").to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"pareto_front: objective column {col!r} is not numeric") from exc
        columns.append(values if hib else -values)
    x = np.column_stack(columns)

    valid = ~np.isnan(x).any(axis=1)
    v = x[valid]
    m, k = v.shape
    dominated = np.zeros(m, dtype=bool)
    if m > 1:
        block = max(1, _BLOCK_ELEMENTS // max(1, m * k))
        for start in range(0, m, block):
            cand = v[start : start + block]  # rows tested for being dominated
            # ge[i, j]: row i is at least as good as candidate j on every objective.
            ge = (v[:, None, :] >= cand[None, :, :]).all(axis=2)
            gt = (v[:, None, :] > cand[None, :, :]).any(axis=2)
            dominated[start : start + block] = (ge & gt).any(axis=0)

    on_front = np.zeros(n, dtype=bool)
    on_front[np.flatnonzero(valid)] = ~dominated
    return pd.Series(on_front, index=df.index, name="pareto")


# --------------------------------------------------------------------------------------
# Seed aggregation
# --------------------------------------------------------------------------------------


def aggregate_seeds(df: pd.DataFrame, group_cols: Sequence[str], value_cols: Sequence[str]) -> pd.DataFrame:
    """Aggregate repeated runs (seeds) into one row per group.

    For each value column ``c`` the result has ``c`` (mean), ``c_std`` (sample standard
    deviation, ddof=1: NaN for a single seed), ``c_min`` and ``c_max``; ``n_seeds`` is the
    number of rows in the group. NaN values are skipped by the statistics but counted in
    ``n_seeds``. Groups are sorted by ``group_cols``; NaN group keys form their own group.
    With no ``group_cols`` the whole frame is one group.
    """
    group_cols = list(group_cols)
    value_cols = list(value_cols)
    if not value_cols:
        raise ValueError("aggregate_seeds needs at least one value column")
    missing = [c for c in group_cols + value_cols if c not in df.columns]
    if missing:
        raise ValueError(f"aggregate_seeds: column(s) {missing} not in the frame")
    overlap = sorted(set(group_cols) & set(value_cols))
    if overlap:
        raise ValueError(f"aggregate_seeds: column(s) {overlap} are both group and value columns")

    out_names = [f"{c}{suffix}" for c in value_cols for suffix in ("", "_std", "_min", "_max")]
    out_names.append("n_seeds")
    clash = sorted(set(out_names) & set(group_cols))
    if clash or len(set(out_names)) != len(out_names):
        raise ValueError(f"aggregate_seeds: output column names collide: {clash or out_names}")

    if not group_cols:
        values = df[value_cols].apply(pd.to_numeric)
        row: dict[str, Any] = {}
        for c in value_cols:
            row[c] = values[c].mean()
            row[f"{c}_std"] = values[c].std(ddof=1)
            row[f"{c}_min"] = values[c].min()
            row[f"{c}_max"] = values[c].max()
        row["n_seeds"] = len(df)
        return pd.DataFrame([row], columns=out_names)

    grouped = df.groupby(group_cols, dropna=False, sort=True)
    stats = grouped[value_cols].agg(["mean", "std", "min", "max"])
    suffixes = {"mean": "", "std": "_std", "min": "_min", "max": "_max"}
    columns = {f"{c}{suffix}": stats[(c, stat)] for c in value_cols for stat, suffix in suffixes.items()}
    result = pd.DataFrame({**columns, "n_seeds": grouped.size().astype(int)}, index=stats.index)
    return result.reset_index()


# --------------------------------------------------------------------------------------
# Comparisons the report decides on: cluster bootstrap, counts, Holm, power
# --------------------------------------------------------------------------------------

_NORMAL = NormalDist()
POWER = 0.80  # the power at which a tie's minimal detectable difference is stated


def z_value(level: float) -> float:
    """Two-sided critical value: ``z_value(0.95)`` = 1.96."""
    return _NORMAL.inv_cdf(1.0 - (1.0 - level) / 2.0)


def cluster_weights(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` rows of multinomial cluster counts: row r says how often each cluster was
    drawn in replicate r (a draw of ``n_clusters`` clusters with replacement)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot).astype(float)


def _cluster_sums(values: np.ndarray, cluster_index: np.ndarray, n_clusters: int) -> np.ndarray:
    """Sum of per-item rows within each cluster: (n_items, k) -> (n_clusters, k)."""
    out = np.zeros((n_clusters, values.shape[1]))
    np.add.at(out, cluster_index, values)
    return out


def macro_f1_from_counts(counts: np.ndarray, n_classes: int, *, fixed_classes: bool) -> np.ndarray:
    """Macro-F1 from (..., n_classes, n_classes + 1) confusion counts (last column: unparsed).

    ``fixed_classes``: the reference scoring's rule: only pairs whose prediction is a class
    count, and the mean is over all ``n_classes``. Otherwise (corrected) an unparsed reply is
    a miss of its gold class, and the mean is over A-D and any further class that occurs in the
    gold labels or the predictions (as ``scoring.summarize``).
    """
    cm = counts[..., :n_classes]
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    predicted = cm.sum(axis=-2)
    gold = cm.sum(axis=-1) if fixed_classes else counts.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(predicted > 0, tp / predicted, 0.0)
        rec = np.where(gold > 0, tp / gold, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    if fixed_classes:
        return f1.mean(axis=-1)
    # A-D always (the four options every question has), a fifth class when it occurs
    present = (gold > 0) | (predicted > 0) | (np.arange(n_classes) < 4)
    return (f1 * present).sum(axis=-1) / present.sum(axis=-1)


def macro_f1(golds, preds, classes, *, fixed_classes: bool) -> float:
    """Macro-F1 of labelled items (a prediction outside `classes`, None included, is unparsed;
    an item whose gold is outside `classes` counts nowhere), by `macro_f1_from_counts`'s rules."""
    lookup = {c: i for i, c in enumerate(classes)}
    codes = np.array([[lookup.get(g, -1), lookup.get(p, -1)] for g, p in zip(golds, preds)], dtype=int)
    return macro_f1_codes(codes.reshape(-1, 2), len(classes), fixed_classes=fixed_classes)


def macro_f1_codes(codes: np.ndarray, n_classes: int, *, fixed_classes: bool) -> float:
    """Macro-F1 of (gold, prediction) class codes, one row per item (-1 or >= n_classes: no class)."""
    counts = _confusion_rows(np.asarray(codes, dtype=int), n_classes).sum(axis=0).reshape(n_classes, n_classes + 1)
    return float(macro_f1_from_counts(counts, n_classes, fixed_classes=fixed_classes))


def _confusion_rows(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Per item a one-hot row over (gold, prediction) pairs; prediction -1 = unparsed (last
    column); an item whose gold is not a class (-1) contributes nothing."""
    gold = np.where(codes[:, 0] < n_classes, codes[:, 0], -1)
    pred = np.where(codes[:, 1] < n_classes, codes[:, 1], -1)
    width = n_classes + 1
    rows = np.zeros((len(codes), n_classes * width))
    ok = gold >= 0
    col = gold * width + np.where(pred >= 0, pred, n_classes)
    rows[np.flatnonzero(ok), col[ok]] = 1.0
    return rows


def cluster_bootstrap_diff(
    runs_a: Sequence[np.ndarray],
    runs_b: Sequence[np.ndarray],
    clusters: Sequence[Any],
    *,
    statistic: str = "mean",
    n_classes: int = 4,
    fixed_classes: bool = False,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Difference of a statistic between two configurations over shared items, with its
    cluster-bootstrap standard error.

    ``runs_a`` / ``runs_b``: one array per run (seed) of a configuration, every array over
    the same items in the same order: per-item values for ``statistic="mean"``, or (gold,
    prediction) class codes of shape (n_items, 2) for ``"macro_f1"`` (prediction -1 =
    unparsed). A configuration's statistic is the mean over its runs. Each replicate draws
    clusters (``clusters[i]`` names item i's) with replacement and keeps every item and every
    run of a drawn cluster, so seeds of one item and items of one context move together and
    a configuration with one run (an untuned base) is counted once.

    Returns ``{"estimate", "se", "a", "b", "n", "n_clusters"}`` (``a``, ``b``: each side's
    statistic on these items).
    """
    labels = pd.factorize(pd.Series(list(clusters), dtype=object))[0]
    n_items = len(labels)
    n_clusters = int(labels.max()) + 1 if n_items else 0
    if n_items == 0:
        raise ValueError("cluster_bootstrap_diff: no shared items")

    def reduce(runs: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for run in runs:
            run = np.asarray(run)
            if len(run) != n_items:
                raise ValueError(f"cluster_bootstrap_diff: a run has {len(run)} items, the clusters {n_items}")
            if statistic == "mean":
                out.append(_cluster_sums(np.column_stack([run.astype(float), np.ones(n_items)]), labels, n_clusters))
            elif statistic == "macro_f1":
                out.append(_cluster_sums(_confusion_rows(run.astype(int), n_classes), labels, n_clusters))
            else:
                raise ValueError(f"statistic must be 'mean' or 'macro_f1', got {statistic!r}")
        return out

    def value(sums: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
        per_run = []
        for s in sums:
            totals = weights @ s
            if statistic == "mean":
                per_run.append(totals[..., 0] / totals[..., 1])
            else:
                shaped = totals.reshape(*totals.shape[:-1], n_classes, n_classes + 1)
                per_run.append(macro_f1_from_counts(shaped, n_classes, fixed_classes=fixed_classes))
        return np.mean(per_run, axis=0)

    sums_a, sums_b = reduce(runs_a), reduce(runs_b)
    ones = np.ones(n_clusters)
    va, vb = float(value(sums_a, ones)), float(value(sums_b, ones))
    out = {"estimate": va - vb, "se": float("nan"), "a": va, "b": vb, "n": n_items, "n_clusters": n_clusters}
    if n_clusters < 2:
        return out
    weights = cluster_weights(n_clusters, n_boot, seed)
    reps = value(sums_a, weights) - value(sums_b, weights)
    reps = reps[np.isfinite(reps)]
    out["se"] = float(np.std(reps, ddof=1)) if reps.size > 1 else float("nan")
    return out


def proportion_diff(correct_a: int, n_a: int, correct_b: int, n_b: int) -> dict[str, float]:
    """Difference of two proportions from counts alone (no per-item outcomes), with the
    Agresti-Caffo standard error (one success and one failure added to each side).

    Unpaired: where both proportions come from the same items the true standard error is
    smaller, so the interval built from it is conservative. ``center`` is the adjusted
    difference the interval is built around.
    """
    if min(n_a, n_b) <= 0:
        raise ValueError("proportion_diff: both sides need at least one item")
    pa, pb = (correct_a + 1) / (n_a + 2), (correct_b + 1) / (n_b + 2)
    se = math.sqrt(pa * (1 - pa) / (n_a + 2) + pb * (1 - pb) / (n_b + 2))
    return {
        "estimate": correct_a / n_a - correct_b / n_b,
        "center": pa - pb,
        "se": se,
        "n": int(min(n_a, n_b)),
        "n_clusters": int(min(n_a, n_b)),
    }


def normal_test(center: float, se: float) -> float:
    """Two-sided p-value of ``center / se`` against zero (1 when both are zero)."""
    if math.isnan(center) or math.isnan(se):
        return float("nan")
    if se == 0:
        return 1.0 if center == 0 else 0.0
    return 2.0 * _NORMAL.cdf(-abs(center) / se)


def holm(pvalues: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjustment within one family.

    Returns (adjusted p-values, the level each comparison is tested at: alpha/(m - k) for
    the k-th smallest p, k from 0, as a divisor ``m - k``). NaN p-values (no test) are left
    out of the family and stay NaN.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    divisors = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adjusted[i] = running
        divisors[i] = m - k
    return adjusted, divisors


def min_detectable(se: float, *, alpha: float = 0.05, power: float = POWER) -> float:
    """Smallest true difference detected with ``power`` by a two-sided test at ``alpha``."""
    if se is None or math.isnan(se):
        return float("nan")
    return (z_value(1 - alpha) + _NORMAL.inv_cdf(power)) * se


__all__ = [
    "aggregate_seeds",
    "cluster_bootstrap_diff",
    "holm",
    "macro_f1_from_counts",
    "min_detectable",
    "normal_test",
    "proportion_diff",
    "z_value",
    "pareto_front",
]
