"""Statistics used by the study's report: Pareto fronts, paired bootstrap intervals, seed aggregation.

Only numpy and pandas are used, so the report can be rebuilt without loading a model.

Conventions
-----------
* Bootstrap intervals are percentile intervals: the ``(1 - confidence) / 2`` and
  ``1 - (1 - confidence) / 2`` quantiles of the replicate statistics.
* Every bootstrap is deterministic for a fixed ``seed`` (``numpy.random.default_rng``).
* The paired bootstraps resample item indices once per replicate and apply the same
  indices to both models, so item difficulty cancels out of the comparison.
* With a single item the interval collapses to the point estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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
            f"pareto_front: objective column(s) {missing} not in the frame; "
            f"available columns: {list(df.columns)}"
        )
    for col, hib in objectives.items():
        if not isinstance(hib, (bool, np.bool_)):
            raise TypeError(
                f"pareto_front: objectives[{col!r}] must be a bool (higher_is_better), got {hib!r}"
            )

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
# Bootstrap helpers
# --------------------------------------------------------------------------------------


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_bootstrap_args(n_boot: int, confidence: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not (0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _resolve_statistic(
    statistic: Any,
) -> tuple[Callable[[np.ndarray], float], Callable[[np.ndarray], np.ndarray]]:
    """Return (apply to a 1-D array, apply to each row of a 2-D array of replicates)."""
    if isinstance(statistic, str):
        if statistic == "mean":
            return (lambda a: float(np.mean(a))), (lambda m: np.mean(m, axis=1))
        if statistic == "median":
            return (lambda a: float(np.median(a))), (lambda m: np.median(m, axis=1))
        raise ValueError(f"statistic must be 'mean', 'median' or a callable, got {statistic!r}")
    if callable(statistic):

        def one(a: np.ndarray) -> float:
            return float(statistic(a))

        def rows(m: np.ndarray) -> np.ndarray:
            return np.array([float(statistic(row)) for row in m], dtype=float)

        return one, rows
    raise ValueError(f"statistic must be 'mean', 'median' or a callable, got {statistic!r}")


def _index_blocks(rng: np.random.Generator, n: int, n_boot: int):
    """Yield index matrices (rows = replicates, n columns) covering n_boot replicates."""
    block = max(1, _BLOCK_ELEMENTS // max(1, n))
    done = 0
    while done < n_boot:
        size = min(block, n_boot - done)
        yield rng.integers(0, n, size=(size, n))
        done += size


def _percentile_interval(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of the replicate statistics; replicates that are NaN are ignored."""
    finite = reps[~np.isnan(reps)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - float(confidence)) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def _comparison(estimate: float, low: float, high: float, n: int, higher_is_better: bool) -> dict[str, Any]:
    # An interval that excludes zero names a winner; anything else (including an
    # undefined interval) is reported as a tie.
    if low > 0:
        better = "a" if higher_is_better else "b"
    elif high < 0:
        better = "b" if higher_is_better else "a"
    else:
        better = "tie"
    return {
        "estimate": float(estimate),
        "low": float(low),
        "high": float(high),
        "n": int(n),
        "tie": better == "tie",
        "better": better,
    }


# --------------------------------------------------------------------------------------
# Bootstrap intervals
# --------------------------------------------------------------------------------------


def bootstrap_ci(
    values: Any,
    *,
    statistic: Any = "mean",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile bootstrap interval of ``statistic`` over per-item ``values``.

    ``statistic`` is "mean", "median" or a callable taking a 1-D array. NaN items are
    dropped; ``n`` reports the number of items used. Raises ValueError when no item is
    left. Returns ``{"estimate", "low", "high", "n"}``.
    """
    _check_bootstrap_args(n_boot, confidence)
    one, rows = _resolve_statistic(statistic)
    x = _as_1d(values, "values")
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        raise ValueError("bootstrap_ci: no items to resample (empty input, or every value is NaN)")

    estimate = one(x)
    if n == 1:
        return {"estimate": estimate, "low": estimate, "high": estimate, "n": 1}

    rng = np.random.default_rng(seed)
    reps = np.concatenate([rows(x[idx]) for idx in _index_blocks(rng, n, n_boot)])
    low, high = _percentile_interval(reps, confidence)
    return {"estimate": estimate, "low": low, "high": high, "n": int(n)}


def paired_bootstrap_diff(
    a: Any,
    b: Any,
    *,
    statistic: Any = "mean",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """Paired bootstrap of ``statistic(a) - statistic(b)`` over shared items.

    ``a`` and ``b`` are per-item scores of two models on the same items in the same order.
    Each replicate draws one set of item indices (with replacement) and applies it to both
    models. Items where either score is NaN are dropped; ``n`` is the number of items used.

    Returns ``{"estimate", "low", "high", "n", "tie", "better"}``: ``tie`` is True when the
    interval contains 0; ``better`` is "a", "b" or "tie", reading larger scores as better
    unless ``higher_is_better=False``.
    """
    _check_bootstrap_args(n_boot, confidence)
    one, rows = _resolve_statistic(statistic)
    xa = _as_1d(a, "a")
    xb = _as_1d(b, "b")
    if xa.size != xb.size:
        raise ValueError(
            f"paired_bootstrap_diff: a and b must score the same items; got lengths {xa.size} and {xb.size}"
        )
    keep = ~(np.isnan(xa) | np.isnan(xb))
    xa, xb = xa[keep], xb[keep]
    n = xa.size
    if n == 0:
        raise ValueError(
            "paired_bootstrap_diff: no items to resample (empty input, or every item is NaN in a or b)"
        )

    estimate = one(xa) - one(xb)
    if n == 1:
        return _comparison(estimate, estimate, estimate, 1, higher_is_better)

    rng = np.random.default_rng(seed)
    reps = np.concatenate([rows(xa[idx]) - rows(xb[idx]) for idx in _index_blocks(rng, n, n_boot)])
    low, high = _percentile_interval(reps, confidence)
    return _comparison(estimate, low, high, n, higher_is_better)


def paired_bootstrap_metric(
    items_a: pd.DataFrame,
    items_b: pd.DataFrame,
    metric: Callable[[pd.DataFrame], float],
    *,
    key: str = "id",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """Paired bootstrap of ``metric(items_a) - metric(items_b)`` for corpus-level metrics.

    For metrics that are not means of per-item scores (macro-F1 over answer letters, for
    example). The frames are aligned on ``key`` (inner join: only ids present in both are
    used, ``n`` reports how many); each replicate resamples those ids with replacement and
    evaluates ``metric`` on the resampled rows of both models. The frames passed to
    ``metric`` keep the input columns (``key`` included, possibly repeated ids) and a fresh
    RangeIndex. Replicates where ``metric`` returns NaN are left out of the interval.

    Returns the same dict shape as :func:`paired_bootstrap_diff`.
    """
    _check_bootstrap_args(n_boot, confidence)
    for name, frame in (("items_a", items_a), ("items_b", items_b)):
        if key not in frame.columns:
            raise ValueError(f"paired_bootstrap_metric: key column {key!r} not in {name}")
        dup = frame[key][frame[key].duplicated()]
        if len(dup):
            raise ValueError(
                f"paired_bootstrap_metric: {name} has duplicate {key!r} values, e.g. {dup.iloc[0]!r}"
            )

    # Common ids in items_a's order, so the resampling is reproducible for given inputs.
    common = items_a[key][items_a[key].isin(set(items_b[key]))].tolist()
    n = len(common)
    if n == 0:
        raise ValueError(f"paired_bootstrap_metric: items_a and items_b share no {key!r} values")

    a_al = items_a.set_index(key, drop=False).loc[common].reset_index(drop=True)
    b_al = items_b.set_index(key, drop=False).loc[common].reset_index(drop=True)

    estimate = float(metric(a_al)) - float(metric(b_al))
    if n == 1:
        return _comparison(estimate, estimate, estimate, 1, higher_is_better)

    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot, dtype=float)
    for r in range(n_boot):
        idx = rng.integers(0, n, size=n)
        ra = float(metric(a_al.iloc[idx].reset_index(drop=True)))
        rb = float(metric(b_al.iloc[idx].reset_index(drop=True)))
        reps[r] = ra - rb
    low, high = _percentile_interval(reps, confidence)
    return _comparison(estimate, low, high, n, higher_is_better)


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
    result = pd.DataFrame(index=stats.index)
    for c in value_cols:
        result[c] = stats[(c, "mean")]
        result[f"{c}_std"] = stats[(c, "std")]
        result[f"{c}_min"] = stats[(c, "min")]
        result[f"{c}_max"] = stats[(c, "max")]
    result["n_seeds"] = grouped.size().astype(int)
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


def _confusion_rows(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Per item a one-hot row over (gold, prediction) pairs; prediction -1 = unparsed (last
    column); an item whose gold is not a class (-1) contributes nothing."""
    gold, pred = codes[:, 0], codes[:, 1]
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
                out.append(_cluster_sums(np.column_stack([run.astype(float), np.ones(n_items)]), labels,
                                         n_clusters))
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
    return {"estimate": correct_a / n_a - correct_b / n_b, "center": pa - pb, "se": se,
            "n": int(min(n_a, n_b)), "n_clusters": int(min(n_a, n_b))}


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
    "bootstrap_ci",
    "paired_bootstrap_diff",
    "paired_bootstrap_metric",
    "pareto_front",
]
