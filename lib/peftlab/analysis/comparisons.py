"""Comparisons between configurations, as the nine questions decide them.

A configuration is (base model, method, rank, training task); its runs are its seeds.

Measures (``MEASURES``)
    Every efficacy measure counts every item: an unparsed reply is wrong, never dropped.
    ARC: macro-F1 (``arc_macro_f1``, 0..1); OpenMath: exact-match accuracy
    (``openmath_accuracy``, %); SQuAD v2: F1 (``squad_f1``, %). Records without per-item
    scores (the imported reference results) fall back to the proportion their counts give
    (``arc_accuracy``, ``openmath_accuracy``, ``squad_em``). Cost: batch-1 latency per timed
    item (``latency_s``) and generated tokens per item (``tokens``). OpenMath's mean absolute
    difference averages parsed replies only, so it appears in Table 1, never in a comparison.

Paired comparison
    Both configurations on one item set: the items every run of both was scored on; ``n``
    counts them. The standard error comes from a cluster bootstrap (``stats.
    cluster_bootstrap_diff``): clusters (an item, or the SQuAD questions of one passage) are
    resampled with every seed of a drawn item, so seeds are not counted as extra items and an
    untuned base counts once. From counts alone: the Agresti-Caffo interval for two
    proportions (unpaired, hence conservative).

Decision
    The comparisons behind one question form its family. A comparison with fewer than
    ``min_n`` clusters has no interval and reads "insufficient data". The others get a normal
    p-value, Holm-adjusted within the family; the reported interval is the one at the level
    Holm tests that comparison at (``ci95_*`` is the unadjusted 95 % interval). A difference
    is decisive when its adjusted p-value is below ``alpha``, which puts zero outside its
    adjusted interval. ``mde`` is the smallest difference the comparison detects with 80 %
    power at 5 % two-sided: a tie rules out differences larger than it.

Latency
    Timing noise does not shrink with more items, so a latency difference is decisive only if
    it is also larger than the timing noise measured for the two models: the drift between
    repeated timing passes of the same items, and, for two models of one architecture (whose
    per-token cost is the same by construction), the difference of their per-token costs
    (slope of latency over generated tokens on the timed items). When no noise was measured,
    a latency difference is "insufficient data". Generated tokens (every item, no timing
    noise) say where a latency difference comes from.

Memory
    One measurement per run: differences within ``MEMORY_TOLERANCE`` count as equal.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from peftlab.analysis.study_records import StudyRecords, _sort_key
from peftlab.core.stats import (
    aggregate_seeds,
    cluster_bootstrap_diff,
    holm,
    macro_f1_codes,
    min_detectable,
    normal_test,
    proportion_diff,
    z_value,
)
from peftlab.tasks.base import Measure
from peftlab.tasks.registry import TASKS

ALPHA = 0.05
MIN_N = 20
N_BOOT = 2000
MEMORY_TOLERANCE = 0.05  # memory figures within 5 % of each other count as equal (one measurement per run)


# Per-item measures: the tasks' own (their registry entries) and the cost measures every task has.
MEASURES = {
    m.name: m
    for m in (
        *(m for task in TASKS.values() for m in task.scoring.measures),
        Measure(
            "latency_s",
            "batch-1 latency",
            "s",
            {"corrected": ("latency_s", 1.0), "reference": ("latency_s", 1.0)},
            higher_is_better=False,
            digits=3,
            words="s",
            short="latency s",
            role="cost",
        ),
        Measure(
            "tokens",
            "generated tokens",
            "tokens",
            {"corrected": ("tokens_generated", 1.0), "reference": ("tokens_generated", 1.0)},
            higher_is_better=False,
            words="tokens",
            short="tokens",
            role="cost",
        ),
    )
}
# Per task, the efficacy measures in order of preference: format-free per-item measures first
# (log-likelihood choice, the flexible reading), then the protocol's strict format, counts last.
EFFICACY_MEASURES = {name: task.scoring.efficacy_measures for name, task in TASKS.items()}
# Per task, its format measure: whether a reply gave its answer as the protocol asks.
FORMAT_MEASURES = {name: m.name for name, task in TASKS.items() for m in task.scoring.measures if m.role == "format"}
CUT_LIMIT = 0.10  # a model x task with more of its replies at max_new_tokens is "cut at the cap"
AT_CHANCE_LEVEL = 0.95  # a configuration is at chance when this interval of (score - chance) holds 0


def item_values(frame: pd.DataFrame | None, measure: str, scoring_name: str) -> pd.DataFrame | None:
    """Per-item data of ``measure`` from an items file: ``id``, ``cluster`` and ``v`` (or the
    ARC class codes ``g``, ``p``). None when the file lacks what the measure needs."""
    if frame is None or "id" not in frame.columns:
        return None
    ids = frame["id"].astype(str)
    cluster = frame["cluster"].astype(str) if "cluster" in frame.columns else ids
    out = pd.DataFrame({"id": ids, "cluster": cluster})

    def column(name: str) -> pd.Series | None:
        if name not in frame.columns or not frame[name].notna().any():
            return None
        return frame[name]

    spec = MEASURES[measure]
    if spec.statistic == "macro_f1":
        classes = spec.classes(frame, scoring_name)
        if classes is None:
            return None
        out["g"], out["p"] = classes["g"].to_numpy(), classes["p"].to_numpy()
        return out
    name, factor = spec.columns.get(scoring_name, (None, 1.0))
    if name and column(name) is None and spec.recompute is not None and {"reply", "gold"} <= set(frame.columns):
        values = spec.recompute(frame)  # items written before the column existed
    else:
        values = column(name) if name else None
    if values is None:
        return None
    out["v"] = pd.to_numeric(values.astype(float), errors="coerce") * factor
    # A blind guess's score per item, in the measure's unit (the floor, 0, without a chance column).
    chance = column(spec.chance) if spec.chance else None
    out["c"] = pd.to_numeric(chance.astype(float), errors="coerce").fillna(0.0) * factor if chance is not None else 0.0
    return out[out["v"].notna()].reset_index(drop=True)


def latency_slope(frame: pd.DataFrame | None) -> float:
    """Seconds per generated token: least-squares slope of batch-1 latency over tokens."""
    if frame is None or not {"latency_s", "latency_tokens"} <= set(frame.columns):
        return math.nan
    timed = frame[frame["latency_s"].notna() & frame["latency_tokens"].notna()]
    tokens = timed["latency_tokens"].astype(float).to_numpy()
    if len(timed) < 3 or np.unique(tokens).size < 2:
        return math.nan
    return float(np.polyfit(tokens, timed["latency_s"].astype(float).to_numpy(), 1)[0])


_CFG_VALUES = (
    "score",
    "efficacy",
    "latency_mean_s",
    "latency_median_s",
    "latency_p90_s",
    "tokens_mean",
    "s_per_token",
    "slope_s_per_token",
    "timing_noise_rel",
    "eval_res_gb",
    "eval_all_gb",
    "eval_batched_gb",
    "parse_rate",
    "cut_rate",
    "count_correct",
    "count_n",
)
_CFG_META = (
    "block",
    "base",
    "base_model",
    "base_size",
    "method",
    "method_key",
    "rank",
    "train_task",
    "trained",
    "higher_is_better",
    "scoring",
    "score_metric",
    "count_metric",
)


class Analysis:
    """A study's configurations and the comparisons between them.

    ``cfg``: one row per (configuration, task) over its ok evaluations, seeds averaged, with
    ``score`` = the task's efficacy measure (``score_metric``), ``models`` = its runs, and the
    training memory of its runs. ``failed``: the configurations with a failed record.
    """

    def __init__(
        self, records: StudyRecords, *, alpha: float = ALPHA, min_n: int = MIN_N, n_boot: int = N_BOOT, seed: int = 0
    ):
        self.records, self.alpha, self.min_n, self.n_boot, self.seed = records, alpha, min_n, n_boot, seed
        self._data: dict[tuple, pd.DataFrame | None] = {}
        self._chance: dict[tuple, dict | None] = {}  # one bootstrap per (runs, task, measure, scoring)
        self.cfg = self._config_table()
        evals, trains = records.evals, records.trains
        bad = pd.concat(
            [
                evals.loc[evals["status"] != "ok", ["config", "train_task"]],
                trains.loc[trains["status"] != "ok", ["config", "train_task"]],
            ]
        )
        self.failed = sorted(set(bad["config"]))

    # --- per-item data -------------------------------------------------------------
    def data(self, model: str, task: str, measure: str, scoring_name: str) -> pd.DataFrame | None:
        key = (model, task, measure, scoring_name)
        if key not in self._data:
            self._data[key] = item_values(self.records.items(model, task), measure, scoring_name)
        return self._data[key]

    def _score(self, row: pd.Series) -> tuple[float, str | None]:
        """A run's efficacy measure on all its items (per-item data first, then counts)."""
        for name in EFFICACY_MEASURES.get(row["task"], ()):
            data = self.data(row["model"], row["task"], name, row["scoring"])
            if data is not None and len(data):
                measure = MEASURES[name]
                if measure.statistic == "macro_f1":
                    value = macro_f1_codes(
                        data[["g", "p"]].to_numpy(),
                        len(measure.class_labels[row["scoring"]]),
                        fixed_classes=row["scoring"] == "reference",
                    )
                else:
                    value = float(data["v"].mean())
                return value, name
        if row.get("count_metric") in EFFICACY_MEASURES.get(row["task"], ()) and row.get("count_n"):
            return 100.0 * row["count_correct"] / row["count_n"], row["count_metric"]
        return math.nan, None

    def _config_table(self) -> pd.DataFrame:
        ev = self.records.evals[self.records.evals["status"] == "ok"].copy()
        columns = [
            "config",
            "task",
            *_CFG_META,
            "models",
            *_CFG_VALUES,
            "n_seeds",
            "train_res_gb",
            "train_all_gb",
            "train_memory_kind",
            "chance",
            "at_chance",
        ]
        if ev.empty:
            return pd.DataFrame(columns=columns)
        scores = [self._score(row) for _, row in ev.iterrows()]
        ev["score"] = [s for s, _ in scores]
        ev["score_metric"] = [m for _, m in scores]
        ev["slope_s_per_token"] = [latency_slope(self.records.items(m, t)) for m, t in zip(ev["model"], ev["task"])]
        values = [c for c in _CFG_VALUES if c in ev.columns]
        for c in values:
            ev[c] = pd.to_numeric(ev[c], errors="coerce").astype(float)
        agg = aggregate_seeds(ev, ["config", "task"], values)
        ev = ev.assign(_seed=pd.to_numeric(ev["seed"], errors="coerce").fillna(-1)).sort_values(["_seed", "model"])
        meta = ev.groupby(["config", "task"], sort=False).agg(
            **{c: (c, "first") for c in _CFG_META if c != "scoring"},
            scoring=("scoring", lambda s: s.iloc[0] if s.nunique() == 1 else "mixed"),
            models=("model", tuple),
        )
        cfg = meta.join(agg.set_index(["config", "task"])).reset_index()
        tr = self.records.trains[self.records.trains["status"] == "ok"]
        if len(tr):
            mem = tr.groupby("config").agg(
                train_res_gb=("train_res_gb", "mean"),
                train_all_gb=("train_all_gb", "mean"),
                train_memory_kind=("memory_kind", "first"),
            )
            cfg = cfg.merge(mem, left_on="config", right_index=True, how="left")
        else:
            cfg["train_res_gb"], cfg["train_all_gb"], cfg["train_memory_kind"] = math.nan, math.nan, None
        order = _sort_key(cfg)
        cfg = cfg.iloc[np.lexsort(order[["n", "s", "r", "m", "b"]].to_numpy().T)].reset_index(drop=True)
        tests = [
            self._chance_test(row["models"], row["task"], row["score_metric"], row["scoring"])
            for _, row in cfg.iterrows()
        ]
        cfg["chance"] = [t["chance"] if t else math.nan for t in tests]
        cfg["at_chance"] = [t["at_chance"] if t else None for t in tests]
        return cfg

    # --- selections ------------------------------------------------------------------
    def rows(self, task: str | None = None) -> pd.DataFrame:
        return self.cfg if task is None else self.cfg[self.cfg["task"] == task]

    def row(self, config: str, task: str) -> pd.Series | None:
        hit = self.cfg[(self.cfg["config"] == config) & (self.cfg["task"] == task)]
        return hit.iloc[0] if len(hit) else None

    def in_domain(self) -> pd.DataFrame:
        cfg = self.cfg
        return cfg[cfg["trained"].astype(bool) & (cfg["task"] == cfg["train_task"])]

    def untuned(self, base: str) -> str | None:
        hit = self.cfg[(self.cfg["method_key"] == "base") & (self.cfg["base"] == base)]
        return hit["config"].iloc[0] if len(hit) else None

    def failed_in(
        self, *, train_task: str | None = None, methods: tuple | None = None, base: str | None = None
    ) -> list[str]:
        """Configurations with a failed record, optionally of one training task / methods / base."""
        frames = [self.records.evals, self.records.trains]
        out = set()
        for frame in frames:
            bad = frame[frame["status"] != "ok"]
            if train_task is not None:
                bad = bad[bad["train_task"] == train_task]
            if methods is not None:
                bad = bad[bad["method_key"].isin(methods)]
            if base is not None:
                bad = bad[bad["base"] == base]
            out |= set(bad["config"])
        return sorted(out)

    # --- chance ---------------------------------------------------------------------
    def _chance_test(self, models: tuple, task: str, measure: str | None, scoring_name: str) -> dict | None:
        """A configuration's score on ``measure`` against a blind guess on the same items: the
        difference, its cluster-bootstrap interval (AT_CHANCE_LEVEL) and whether it holds 0. None
        for a measure without per-item values (macro-F1, counts)."""
        if measure is None or MEASURES[measure].statistic != "mean" or MEASURES[measure].role != "efficacy":
            return None
        key = (tuple(models), task, measure, scoring_name)
        if key not in self._chance:
            self._chance[key] = self._chance_bootstrap(models, task, measure, scoring_name)
        return self._chance[key]

    def _chance_bootstrap(self, models: tuple, task: str, measure: str, scoring_name: str) -> dict | None:
        frames = [self.data(m, task, measure, scoring_name) for m in models]
        if any(f is None or not len(f) for f in frames):
            return None
        ids = [i for i in frames[0]["id"] if all(i in set(f["id"]) for f in frames[1:])]
        first = frames[0].set_index("id").loc[ids]
        runs = [f.set_index("id").loc[ids, "v"].to_numpy() for f in frames]
        result = cluster_bootstrap_diff(
            runs, [first["c"].to_numpy()], first["cluster"].tolist(), n_boot=self.n_boot, seed=self.seed
        )
        half = z_value(AT_CHANCE_LEVEL) * result["se"]
        low, high = result["estimate"] - half, result["estimate"] + half
        return {
            "chance": result["b"],
            "diff": result["estimate"],
            "low": low,
            "high": high,
            "at_chance": bool(low <= 0 <= high),
        }

    def at_chance(self, config: str, task: str) -> bool | None:
        row = self.row(config, task)
        return None if row is None or row.get("at_chance") is None else bool(row["at_chance"])

    def informative(self, task: str) -> bool:
        """Whether some configuration scores off chance (or off the floor) on ``task``: where every
        one, the untuned base included, is at chance, the task cannot rank methods at this scale."""
        flags = self.rows(task)["at_chance"]
        known = [bool(f) for f in flags if f is not None and not (isinstance(f, float) and math.isnan(f))]
        return not known or not all(known) or len(known) < len(flags)

    def cut(self, config: str, task: str) -> bool:
        """More than CUT_LIMIT of the configuration's replies on ``task`` reached max_new_tokens."""
        row = self.row(config, task)
        return row is not None and pd.notna(row.get("cut_rate")) and row["cut_rate"] > CUT_LIMIT

    # --- comparisons -----------------------------------------------------------------
    def compare(self, a: str, b: str, task: str, measure: str = "efficacy") -> dict:
        """Configuration ``a`` against ``b`` on ``task``, before the family's adjustment.

        ``measure``: "efficacy" (the task's efficacy measure both can be scored on), or a name
        in ``MEASURES``. ``diff`` = a - b in the measure's unit.
        """
        ra, rb = self.row(a, task), self.row(b, task)
        out = {
            "a": a,
            "b": b,
            "task": task,
            "metric": None,
            "n": 0,
            "n_clusters": 0,
            "a_value": math.nan,
            "b_value": math.nan,
            "diff": math.nan,
            "se": math.nan,
            "center": math.nan,
            "method": None,
            "noise_rel": math.nan,
            "note": None,
            "flag": None,
        }
        if ra is None or rb is None:
            out["note"] = f"{a if ra is None else b} has no ok evaluation on {task}"
            return out
        if measure in ("latency_s", "tokens"):
            cut = [c for c in (a, b) if self.cut(c, task)]
            if cut:  # a reply stopped by the cap is short because it was cut, not because the model is fast
                out["flag"] = "cut at the cap"
        if measure == "latency_s" and ra["base"] == rb["base"]:
            return self._latency_from_tokens(out, ra, rb, task)
        names = EFFICACY_MEASURES[task] if measure == "efficacy" else (measure,)
        for name in names:
            result = self._paired(ra, rb, task, name)
            if result is not None:
                out.update(result, metric=name)
                break
        else:
            counted = self._from_counts(ra, rb, names)
            if counted is not None:
                out.update(counted)
            else:
                out["metric"] = names[0]
                out["note"] = "no per-item data or counts for both: no interval"
        if out["metric"] == "latency_s":
            out["noise_rel"] = self._timing_noise(ra, rb, task)
            out["method"] = "cluster bootstrap, measured seconds"
        if out["metric"] in MEASURES and MEASURES[out["metric"]].role == "efficacy":
            sides = [self._chance_test(r["models"], task, out["metric"], r["scoring"]) for r in (ra, rb)]
            if all(t is not None and t["at_chance"] for t in sides):
                out["flag"] = "both at chance"
        return out

    def _latency_from_tokens(self, out: dict, ra: pd.Series, rb: pd.Series, task: str) -> dict:
        """Two models of one architecture have one per-token cost, so their latency differs only
        through the tokens they generate: the difference of generated tokens (every item) times
        the per-token cost, with the tokens' interval. The measured seconds are kept in the note."""
        tokens = self._paired(ra, rb, task, "tokens")
        slopes = [v for v in (ra.get("slope_s_per_token"), rb.get("slope_s_per_token")) if pd.notna(v) and v > 0]
        if not slopes:
            slopes = [v for v in (ra.get("s_per_token"), rb.get("s_per_token")) if pd.notna(v) and v > 0]
        if tokens is None or not slopes:
            out.update(metric="latency_s", note="no per-item token counts or per-token cost: no interval")
            return out
        cost = float(np.mean(slopes))
        measured = ra["latency_mean_s"] - rb["latency_mean_s"]
        out.update(
            {
                **tokens,
                "metric": "latency_s",
                "a_value": ra["latency_mean_s"],
                "b_value": rb["latency_mean_s"],
                "diff": tokens["diff"] * cost,
                "center": tokens["center"] * cost,
                "se": tokens["se"] * cost,
                "method": f"one architecture: generated tokens × {cost:.3g} s/token",
                "note": f"tokens {tokens['a_value']:.1f} vs {tokens['b_value']:.1f} per item; measured "
                f"difference {measured:+.3g} s",
            }
        )
        return out

    def _paired(self, ra: pd.Series, rb: pd.Series, task: str, name: str) -> dict | None:
        if ra["scoring"] != rb["scoring"] and name not in ("latency_s", "tokens"):
            return None
        frames_a = [self.data(m, task, name, ra["scoring"]) for m in ra["models"]]
        frames_b = [self.data(m, task, name, rb["scoring"]) for m in rb["models"]]
        if any(f is None for f in frames_a + frames_b):
            return None
        common = set(frames_a[0]["id"])
        for f in frames_a[1:] + frames_b:
            common &= set(f["id"])
        ids = [i for i in frames_a[0]["id"] if i in common]
        if not ids:
            return {"note": "no items scored by both", "method": "cluster bootstrap"}
        measure = MEASURES[name]
        cols = ["g", "p"] if measure.statistic == "macro_f1" else ["v"]

        def runs(frames):
            return [
                f.set_index("id").loc[ids, cols].to_numpy().squeeze(-1)
                if len(cols) == 1
                else f.set_index("id").loc[ids, cols].to_numpy()
                for f in frames
            ]

        clusters = frames_a[0].set_index("id").loc[ids, "cluster"].tolist()
        fixed = ra["scoring"] == "reference"
        result = cluster_bootstrap_diff(
            runs(frames_a),
            runs(frames_b),
            clusters,
            statistic=measure.statistic,
            n_classes=len(measure.class_labels.get(ra["scoring"], ())),
            fixed_classes=fixed,
            n_boot=self.n_boot,
            seed=self.seed,
        )
        return {
            "n": result["n"],
            "n_clusters": result["n_clusters"],
            "a_value": result["a"],
            "b_value": result["b"],
            "diff": result["estimate"],
            "center": result["estimate"],
            "se": result["se"],
            "method": "cluster bootstrap",
        }

    def _from_counts(self, ra: pd.Series, rb: pd.Series, names: tuple) -> dict | None:
        metric = ra.get("count_metric")
        if metric is None or metric != rb.get("count_metric") or metric not in names:
            return None
        if any(pd.isna(r.get(k)) or not r.get("count_n") for r in (ra, rb) for k in ("count_correct", "count_n")):
            return None
        xa, na, xb, nb = (
            int(round(ra["count_correct"])),
            int(ra["count_n"]),
            int(round(rb["count_correct"])),
            int(rb["count_n"]),
        )
        result = proportion_diff(xa, na, xb, nb)
        return {
            "metric": metric,
            "n": result["n"],
            "n_clusters": result["n_clusters"],
            "a_value": 100 * xa / na,
            "b_value": 100 * xb / nb,
            "diff": 100 * result["estimate"],
            "center": 100 * result["center"],
            "se": 100 * result["se"],
            "method": "counts (Agresti-Caffo, unpaired)",
            "note": "from published counts: no per-item scores, so an unpaired (conservative) interval",
        }

    def _timing_noise(self, ra: pd.Series, rb: pd.Series, task: str) -> float:
        """Relative timing noise for two models of different architectures: the drift between
        repeated timing passes of either, and the spread of per-token cost between runs of one
        architecture in this study (equal by construction, so all of it is run-to-run noise)."""
        noise = [v for v in (ra.get("timing_noise_rel"), rb.get("timing_noise_rel")) if pd.notna(v)]
        noise += self._slope_spread(task)
        return max(noise) if noise else math.nan

    @functools.cache  # noqa: B019 (one Analysis per report; the table does not change)
    def _slope_spread(self, task: str) -> list[float]:
        """Per architecture, the relative spread of per-token cost between its runs on ``task``."""
        spread = []
        for _, group in self.cfg[self.cfg["task"] == task].groupby("base"):
            slopes = group["slope_s_per_token"].dropna()
            slopes = slopes[slopes > 0]
            if len(slopes) >= 2:
                spread.append(float((slopes.max() - slopes.min()) / slopes.mean()))
        return spread

    def adjust(self, comparisons: list[dict], family: str) -> pd.DataFrame:
        """Holm within ``family``; intervals, verdicts and detectable differences."""
        frame = pd.DataFrame(comparisons, columns=COMPARISON_INPUT)
        enough = (frame["n_clusters"] >= self.min_n) & frame["se"].notna()
        p = np.where(enough, [normal_test(c, s) for c, s in zip(frame["center"], frame["se"])], np.nan)
        adjusted, divisors = holm(p)
        rows = []
        for i, c in frame.iterrows():
            measure = MEASURES.get(c["metric"]) if c["metric"] else None
            higher = measure.higher_is_better if measure else True
            row = {
                **c.to_dict(),
                "family": family,
                "family_size": int(np.sum(~np.isnan(p))),
                "p": p[i],
                "p_adjusted": adjusted[i],
                "ci_low": math.nan,
                "ci_high": math.nan,
                "ci95_low": math.nan,
                "ci95_high": math.nan,
                "mde": math.nan,
                "decisive": False,
                "better": None,
                "unit": measure.unit if measure else "",
                "higher_is_better": higher,
            }
            if not enough[i]:
                why = c["note"] or (
                    f"{c['n_clusters']} independent items (clusters) < minimum {self.min_n}"
                    if c["n_clusters"] < self.min_n
                    else "no standard error"
                )
                row.update(verdict="insufficient data", note=why)
                rows.append(row)
                continue
            z = z_value(1 - self.alpha / divisors[i])
            row.update(
                ci_low=c["center"] - z * c["se"],
                ci_high=c["center"] + z * c["se"],
                ci95_low=c["center"] - z_value(0.95) * c["se"],
                ci95_high=c["center"] + z_value(0.95) * c["se"],
                mde=min_detectable(c["se"]),
            )
            decisive = adjusted[i] < self.alpha
            if decisive and c["metric"] == "latency_s" and "measured" in str(c["method"]):
                rel = abs(c["diff"]) / abs(c["b_value"]) if c["b_value"] else math.inf
                if math.isnan(c["noise_rel"]):
                    row.update(verdict="insufficient data", note="timing noise not measured")
                    rows.append(row)
                    continue
                if rel <= c["noise_rel"]:
                    decisive = False
                    row["note"] = f"{100 * rel:.1f} % difference within the {100 * c['noise_rel']:.1f} % timing noise"
            if isinstance(c["flag"], str):
                # Both sides at chance know nothing to tell apart; a reply cut at the cap is not "faster".
                note = row["note"] if isinstance(row["note"], str) and row["note"] else ""
                row["note"] = f"{c['flag']}: never decisive" + (f"; {note}" if note else "")
                decisive = False
            if decisive:
                gain = c["diff"] if higher else -c["diff"]
                row.update(decisive=True, better="a" if gain > 0 else "b", verdict=f"{'a' if gain > 0 else 'b'} better")
            else:
                row["verdict"] = "tie"
            rows.append(row)
        return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)

    # --- best sets ----------------------------------------------------------------------
    def top(
        self, frame: pd.DataFrame, column: str = "score", higher: bool = True, tiebreak: str | None = None
    ) -> pd.Series | None:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.notna().sum() == 0:
            return None
        target = values.max() if higher else values.min()
        tied = frame[values == target]
        if tiebreak and len(tied) > 1:
            order = pd.to_numeric(tied[tiebreak], errors="coerce")
            if order.notna().any():
                return tied.loc[order.idxmin()]
        return tied.iloc[0]


COMPARISON_INPUT = [
    "a",
    "b",
    "task",
    "metric",
    "n",
    "n_clusters",
    "a_value",
    "b_value",
    "diff",
    "se",
    "center",
    "method",
    "noise_rel",
    "note",
    "flag",
]
COMPARISON_COLUMNS = [
    "family",
    "a",
    "b",
    "task",
    "metric",
    "unit",
    "higher_is_better",
    "n",
    "n_clusters",
    "a_value",
    "b_value",
    "diff",
    "se",
    "center",
    "p",
    "p_adjusted",
    "family_size",
    "ci_low",
    "ci_high",
    "ci95_low",
    "ci95_high",
    "mde",
    "decisive",
    "better",
    "verdict",
    "method",
    "noise_rel",
    "note",
    "flag",
]


def memory_equal(a: float, b: float) -> bool | None:
    """Two memory figures within MEMORY_TOLERANCE of each other (None when one is missing)."""
    if pd.isna(a) or pd.isna(b):
        return None
    return abs(a - b) <= MEMORY_TOLERANCE * max(abs(a), abs(b))


__all__ = [
    "ALPHA",
    "Analysis",
    "COMPARISON_COLUMNS",
    "configurations",
    "EFFICACY_MEASURES",
    "MEASURES",
    "MIN_N",
    "Measure",
    "item_values",
    "latency_slope",
    "memory_equal",
]


def configurations(*, records: StudyRecords) -> pd.DataFrame:
    """One row per (configuration, task), seeds averaged, with its efficacy measure as ``score``."""
    return Analysis(records, n_boot=1).cfg
