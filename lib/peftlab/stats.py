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

from collections.abc import Callable, Mapping, Sequence
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


__all__ = [
    "aggregate_seeds",
    "bootstrap_ci",
    "paired_bootstrap_diff",
    "paired_bootstrap_metric",
    "pareto_front",
]
