"""The reference study's nine questions, answered from a study's records.

Every answer rests on the comparisons of ``peftlab.analysis.comparisons`` (paired, cluster bootstrap,
Holm within the question's family, a minimum n, timing noise for latency) and has a status:

* ``decisive``: the comparisons that decide it are decisive after adjustment;
* ``tie``: the data are enough to compare but show no difference (the answer states the
  smallest difference it could have detected);
* ``insufficient data``: too few items, or no per-item data, for the comparisons it needs;
* ``not answerable``: the study lacks what the question needs (a configuration failed, a
  larger base or a second rank was not run, training memory was not measured).

``agrees_with_reference`` says whether the answer says what the reference study said
(None when the answer is undecided). ``HOW`` says, per question, how it is computed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peftlab.analysis.comparisons import ALPHA, COMPARISON_COLUMNS, MEASURES, MIN_N, N_BOOT, Analysis, memory_equal
from peftlab.analysis.study_records import ADAPTERS, METHOD_LABELS, TASK_LABELS, StudyRecords
from peftlab.core.files import write_json
from peftlab.core.stats import pareto_front

QUESTIONS = (
    ("Q1", "Which method has the best in-domain efficacy–efficiency balance?", "full FT"),
    ("Q2", "Do adapters approach or beat full FT, and the larger base?", "no, neither"),
    ("Q3", "Does rank change the efficacy–latency–memory trade-off?", "not materially (≤ 1–2 %)"),
    (
        "Q4",
        "Which method transfers best / forgets least across tasks?",
        "adapters drift less; full FT swings both ways",
    ),
    ("Q5", "Which configurations minimise inference cost?", "full FT on the small base"),
    (
        "Q6",
        "Under a training-memory cap, best accuracy per GB?",
        "VeRA at the hardest cap, then LoRA/DoRA, then full FT",
    ),
    (
        "Q7",
        "If memory forces adapters, is fine-tuning still worth it?",
        "for math/MCQ yes (latency), for extractive QA no",
    ),
    ("Q8", "With ample memory, does full FT dominate?", "yes"),
    (
        "Q9",
        "Which configurations are Pareto-optimal over efficacy, latency, memory?",
        "1.7B base (quality), 0.6B full FT (serve), a SQuAD adapter (latency)",
    ),
)
STATUSES = ("decisive", "tie", "insufficient data", "not answerable")
EFFICACY_NOTE = (
    "efficacy: ARC macro-F1, OpenMath exact-match accuracy, SQuAD v2 F1, each over every item "
    "(imported records without per-item scores: accuracy / exact match from their counts)"
)
HOW = {
    "Q1": (
        "In-domain (each trained configuration on its own training task). Balance = mean of the efficacy "
        "share of the best and the efficiency share (mean of the latency and training-memory shares). The "
        "top balance is compared with every other configuration of its training task on efficacy and latency; "
        "the best set is the top and every configuration it does not beat decisively on some measure without "
        "losing on another."
    ),
    "Q2": (
        "Per training task, the adapter with the best in-domain efficacy against full FT of the same base on "
        "that task, and against the largest untuned base on every evaluation task."
    ),
    "Q3": (
        "Per base, training task and method trained at several ranks: each rank against the next lower one, "
        "in-domain efficacy and latency (comparisons); serving and training memory (point values, equal "
        "within 5 %)."
    ),
    "Q4": (
        "Every trained configuration on each task it was not trained on, against the untuned model of the "
        "same base. Per method: decisive gains, losses and ties."
    ),
    "Q5": (
        "Per task, the fastest configuration (mean batch-1 latency) against every other; the fastest set "
        "is it and those it does not beat decisively. Lowest serving memory (batch-1 peak) within 5 %. The "
        "cheapest configurations are in the fastest set of every task and in the lowest-memory set."
    ),
    "Q6": (
        "Training-memory caps at the observed quantiles (0, 25, 50, 75, 100 %) of the configurations' "
        "training peak (allocated on CUDA, RSS on a CPU). Per training task and cap: the best in-domain "
        "efficacy among the configurations that fit, and the ones it does not beat decisively."
    ),
    "Q7": (
        "Per training task: every adapter configuration trained on it against the untuned model of the same "
        "base on that task (in-domain), on efficacy and latency. Worth it when an adapter is decisively better "
        "in efficacy, or decisively faster without being decisively worse in efficacy."
    ),
    "Q8": (
        "Per training task: full FT against every adapter of the same base. Quality: in-domain efficacy. "
        "Speed and serving: in-domain latency and serving memory. Full FT dominates when it wins every quality "
        "comparison and loses no speed or serving comparison."
    ),
    "Q9": (
        "Per task: the Pareto front over efficacy, latency and serving memory, on configurations (seeds "
        "averaged). A configuration off the front is 'dominated' when the most effective configuration that "
        "dominates it is decisively better on efficacy or latency (or uses more than 5 % less memory), "
        "otherwise 'possibly non-dominated'."
    ),
}


# --------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------


def _task(task: Any) -> str:
    return TASK_LABELS.get(task, str(task))


def _num(value: float, digits: int) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def amount(value: float, metric: str | None, *, signed: bool = False) -> str:
    """A difference in its measure's unit: '+12.4 points' (percentages), '0.031 s', '0.052'."""
    measure = MEASURES.get(metric) if metric else None
    digits = measure.digits if measure else 3
    unit = "" if not measure or not measure.unit else (" points" if measure.unit == "%" else f" {measure.unit}")
    if value is None or pd.isna(value):
        return "–"
    return f"{value:{'+' if signed else ''}.{digits}f}{unit}"


def describe(c: pd.Series | dict) -> str:
    """A comparison for reading: 'a vs b on Task: diff unit [low, high], n = N (verdict)'."""
    measure = MEASURES.get(c["metric"]) if c.get("metric") else None
    digits = measure.digits if measure else 3
    unit = "" if not measure or not measure.unit else (" points" if measure.unit == "%" else f" {measure.unit}")
    head = f"{c['a']} vs {c['b']} on {_task(c['task'])}"
    if c["verdict"] == "insufficient data":
        point = f"{c['diff']:+.{digits}f}{unit}, " if pd.notna(c["diff"]) else ""
        return f"{head}: {point}insufficient data ({c['note']})"
    text = (
        f"{head}: {c['diff']:+.{digits}f}{unit} [{_num(c['ci_low'], digits)}, {_num(c['ci_high'], digits)}], "
        f"n = {int(c['n'])}"
    )
    if c["verdict"] == "tie":
        text += f", tie: no difference larger than {c['mde']:.{digits}f}{unit} (80 % power)"
        if c.get("note") and "timing noise" in str(c["note"]):
            text += f"; {c['note']}"
    return text


def _answer(
    qid: str,
    an: Analysis,
    answer: str,
    status: str,
    agrees: bool | None,
    comparisons: pd.DataFrame | None = None,
    figures: pd.DataFrame | None = None,
) -> dict:
    question, reference = next((q, r) for i, q, r in QUESTIONS if i == qid)
    assert status in STATUSES
    return {
        "id": qid,
        "question": question,
        "answer": answer,
        "status": status,
        "agrees_with_reference": None if agrees is None else bool(agrees),
        "reference_answer": reference,
        "comparisons": comparisons if comparisons is not None else _empty(),
        "figures": (figures if figures is not None else pd.DataFrame()).reset_index(drop=True),
        "how": HOW[qid],
    }


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=COMPARISON_COLUMNS)


def _failed_note(names: list[str]) -> str:
    return f" Failed, so not compared: {', '.join(names)}." if names else ""


def _status_of(comparisons: pd.DataFrame) -> str:
    """decisive if any comparison is; tie if some could be tested; else insufficient data."""
    if comparisons.empty or (comparisons["verdict"] == "insufficient data").all():
        return "insufficient data"
    return "decisive" if comparisons["decisive"].any() else "tie"


def _won(c: pd.Series, side: str) -> bool:
    return bool(c["decisive"]) and c["better"] == side


def _memory_column(frame: pd.DataFrame) -> str:
    """Training memory to decide with: allocated (CUDA) where measured, else resident / RSS."""
    return "train_all_gb" if frame["train_all_gb"].notna().any() else "train_res_gb"


def _best_set(an: Analysis, frame: pd.DataFrame, task: str, comparisons: list, tiebreak: str | None = None):
    """Top configuration by efficacy in ``frame`` and (after adjustment) those it does not beat."""
    top = an.top(frame, "score", True, tiebreak=tiebreak)
    if top is None:
        return None
    for other in frame[frame["config"] != top["config"]]["config"]:
        comparisons.append(an.compare(top["config"], other, task))
    return top


def _members(top: str, frame: pd.DataFrame, adjusted: pd.DataFrame, task: str) -> list[str]:
    members = [top]
    for other in frame[frame["config"] != top]["config"]:
        hit = adjusted[(adjusted["a"] == top) & (adjusted["b"] == other) & (adjusted["task"] == task)]
        if hit.empty or not _won(hit.iloc[0], "a"):
            members.append(other)
    return members


# --------------------------------------------------------------------------------------
# The nine questions
# --------------------------------------------------------------------------------------


def _q1(an: Analysis) -> dict:
    dom = an.in_domain()
    if dom.empty:
        return _answer("Q1", an, "No trained configuration was evaluated on its training task.", "not answerable", None)
    comps, parts, tops = [], [], {}
    memory = _memory_column(dom)
    for train_task, group in dom.groupby("train_task", sort=False):
        g = group.copy()
        g["efficacy_share"] = _share(g["score"], True)
        g["latency_share"] = _share(g["latency_mean_s"], False)
        g["memory_share"] = _share(g[memory], False) if g[memory].notna().all() else math.nan
        g["balance"] = (g["efficacy_share"] + g[["latency_share", "memory_share"]].mean(axis=1)) / 2
        if g["balance"].notna().sum() == 0:
            continue
        top = g.loc[g["balance"].idxmax()]
        tops[train_task] = top
        for other in g[g["config"] != top["config"]]["config"]:
            comps += [
                an.compare(top["config"], other, train_task),
                an.compare(top["config"], other, train_task, "latency_s"),
            ]
        parts.append(g)
    if not tops:
        return _answer("Q1", an, "No in-domain efficacy or latency was measured.", "insufficient data", None)
    adjusted = an.adjust(comps, "Q1")
    texts, sets = [], {}
    figures = pd.concat(parts)
    figures["best_set"] = False
    for train_task, top in tops.items():
        g = figures[figures["train_task"] == train_task]
        members = [top["config"]]
        for _, other in g[g["config"] != top["config"]].iterrows():
            hit = adjusted[(adjusted["b"] == other["config"]) & (adjusted["task"] == train_task)]
            top_wins = any(_won(c, "a") for _, c in hit.iterrows())
            other_wins = any(_won(c, "b") for _, c in hit.iterrows())
            mem = memory_equal(top[memory], other[memory])
            if mem is False:
                top_wins |= top[memory] < other[memory]
                other_wins |= other[memory] < top[memory]
            if not top_wins or other_wins:
                members.append(other["config"])
        figures.loc[(figures["train_task"] == train_task) & figures["config"].isin(members), "best_set"] = True
        methods = sorted({g.loc[g["config"] == m, "method_key"].iloc[0] for m in members})
        sets[train_task] = methods
        texts.append(
            f"trained on {_task(train_task)}: top balance {top['config']} ({top['balance']:.2f}); "
            f"not beaten by it: {', '.join(members[1:]) or 'none'}"
        )
    single = all(len(m) == 1 for m in sets.values())
    methods = {m for ms in sets.values() for m in ms}
    if single and len(methods) == 1:
        head = f"{METHOD_LABELS.get(next(iter(methods)))} has the best balance"
    else:
        head = "No single method: " + "; ".join(
            f"{_task(t)}: {', '.join(METHOD_LABELS.get(m, m) for m in ms)}" for t, ms in sets.items()
        )
    status = _status_of(adjusted)
    if status == "decisive" and not single:
        status = "tie"
    agrees = (
        True
        if all(ms == ["full"] for ms in sets.values())
        else (False if any("full" not in ms for ms in sets.values()) else None)
    )
    answer = f"{head} ({'; '.join(texts)})."
    columns = ["train_task", "config", "method", "rank", "score", "latency_mean_s", memory, "balance", "best_set"]
    return _answer("Q1", an, answer, status, agrees, adjusted, figures[columns])


def _q2(an: Analysis) -> dict:
    dom = an.in_domain()
    untuned = an.cfg[an.cfg["method_key"] == "base"]
    comps, notes = [], []
    for (train_task, base), group in dom.groupby(["train_task", "base"], sort=False):
        adapters = group[group["method_key"].isin(ADAPTERS)]
        best = an.top(adapters, "score", True, tiebreak="latency_mean_s")
        if best is None:
            continue
        full = group[group["method_key"] == "full"]
        if len(full):
            comps.append({**an.compare(best["config"], full["config"].iloc[0], train_task), "_half": "full FT"})
        else:
            failed = an.failed_in(train_task=train_task, methods=("full",), base=base)
            notes.append(f"full FT on {_task(train_task)} {'failed' if failed else 'was not run'}")
        larger = untuned[untuned["base_size"] > best["base_size"]]
        if len(larger):
            big = larger.loc[larger["base_size"].idxmax(), "config"]
            for task in an.rows()["task"].unique():
                if an.row(big, task) is not None and an.row(best["config"], task) is not None:
                    comps.append({**an.compare(best["config"], big, task), "_half": "larger base"})
    if not comps:
        return _answer(
            "Q2",
            an,
            "No adapter configuration next to a full FT run or a larger untuned base."
            + (f" ({'; '.join(notes)})" if notes else ""),
            "not answerable",
            None,
        )
    halves_of = [c.pop("_half") for c in comps]
    adjusted = an.adjust(comps, "Q2")
    adjusted["against"] = halves_of
    verdicts, texts = {}, []
    for half in ("full FT", "larger base"):
        hit = adjusted[adjusted["against"] == half]
        if hit.empty:
            verdicts[half] = "not run"
            continue
        if any(_won(c, "a") for _, c in hit.iterrows()):
            verdicts[half] = "yes"
        elif all(_won(c, "b") for _, c in hit.iterrows()):
            verdicts[half] = "no"
        else:
            verdicts[half] = "undecided"
        texts.append(f"vs {half}: " + "; ".join(describe(c) for _, c in hit.iterrows()))
    words = {
        "yes": "an adapter beats",
        "no": "every adapter falls short of",
        "undecided": "undecided against",
        "not run": "nothing to compare with for",
    }
    head = "; ".join(f"{words[v]} {h}" for h, v in verdicts.items())
    decided = [v for v in verdicts.values() if v != "not run"]
    if all(v == "no" for v in decided) and len(decided) == 2:
        agrees = True
    elif any(v == "yes" for v in decided):
        agrees = False
    else:
        agrees = None
    status = "decisive" if decided and all(v in ("yes", "no") for v in decided) else _status_of(adjusted)
    if status == "decisive" and "undecided" in decided:
        status = "tie"
    answer = head[0].upper() + head[1:] + ". " + " | ".join(texts) + "." + (f" ({'; '.join(notes)}.)" if notes else "")
    return _answer("Q2", an, answer, status, agrees, adjusted)


def _q3(an: Analysis) -> dict:
    dom = an.in_domain()
    dom = dom[dom["method_key"].isin(ADAPTERS)]
    serving = an.cfg.groupby("config")["eval_res_gb"].max()
    memory = _memory_column(dom) if len(dom) else "train_res_gb"
    comps, memory_rows = [], []
    for (_base, train_task, _method), group in dom.groupby(["base", "train_task", "method_key"], sort=False):
        group = group.sort_values("rank")
        for low, high in zip(group.iloc[:-1].itertuples(), group.iloc[1:].itertuples()):
            comps += [
                an.compare(high.config, low.config, train_task),
                an.compare(high.config, low.config, train_task, "latency_s"),
            ]
            for what, lo, hi in (
                ("serving memory", serving.get(low.config), serving.get(high.config)),
                ("training memory", getattr(low, memory), getattr(high, memory)),
            ):
                same = memory_equal(lo, hi)
                memory_rows.append(
                    {
                        "lower": low.config,
                        "higher": high.config,
                        "measure": what,
                        "low_gb": lo,
                        "high_gb": hi,
                        "changes": None if same is None else not same,
                    }
                )
    if not comps:
        return _answer("Q3", an, "No method was trained at two or more ranks.", "not answerable", None)
    adjusted = an.adjust(comps, "Q3")
    memory_frame = pd.DataFrame(memory_rows)
    decisive = adjusted[adjusted["decisive"]]
    mem_changes = memory_frame[memory_frame["changes"] == True]  # noqa: E712 (None = not measured)
    if len(decisive):
        head = "Yes: " + "; ".join(describe(c) for _, c in decisive.iterrows())
    else:
        tested = adjusted[adjusted["verdict"] != "insufficient data"]
        widest = tested.groupby("metric")["mde"].max() if len(tested) else pd.Series(dtype=float)
        bounds = ", ".join(f"{MEASURES[m].label} above {amount(v, m)}" for m, v in widest.items())
        head = "Not materially: no rank change is decisive in efficacy or latency" + (
            f" (changes of {bounds} would have been detected with 80 % power)" if bounds else ""
        )
    if len(mem_changes):
        head += "; memory changes beyond 5 %: " + ", ".join(
            f"{r.measure} {r.lower} → {r.higher} ({r.low_gb:.3g} → {r.high_gb:.3g} GB)"
            for r in mem_changes.itertuples()
        )
    status = _status_of(adjusted)
    agrees = None if status == "insufficient data" else decisive.empty
    return _answer("Q3", an, head + ".", status, agrees, adjusted, memory_frame)


def _q4(an: Analysis) -> dict:
    comps = []
    trained = an.cfg[an.cfg["trained"].astype(bool) & (an.cfg["task"] != an.cfg["train_task"])]
    for r in trained.itertuples():
        base_cfg = an.untuned(r.base)
        if base_cfg is not None and an.row(base_cfg, r.task) is not None:
            comps.append(an.compare(r.config, base_cfg, r.task))
    if not comps:
        return _answer(
            "Q4",
            an,
            "No trained configuration evaluated off its training task next to an untuned model of the same base.",
            "not answerable",
            None,
        )
    adjusted = an.adjust(comps, "Q4")
    methods = an.cfg.drop_duplicates("config").set_index("config")["method_key"]
    adjusted["method_key"] = adjusted["a"].map(methods)
    summary = (
        adjusted.groupby("method_key", sort=False)
        .agg(
            comparisons=("a", "size"),
            gains=("better", lambda b: int((b == "a").sum())),
            losses=("better", lambda b: int((b == "b").sum())),
            insufficient=("verdict", lambda v: int((v == "insufficient data").sum())),
        )
        .reset_index()
    )
    summary["ties"] = summary["comparisons"] - summary["gains"] - summary["losses"] - summary["insufficient"]
    summary["changed_share"] = (summary["gains"] + summary["losses"]) / summary["comparisons"]
    summary.insert(0, "method", summary["method_key"].map(METHOD_LABELS))
    parts = [
        f"{r.method}: {r.gains} gains, {r.losses} losses, {r.ties} ties of {r.comparisons}"
        + (f" ({r.insufficient} insufficient data)" if r.insufficient else "")
        for r in summary.itertuples()
    ]
    full = summary[summary["method_key"] == "full"]
    adapters = summary[summary["method_key"].isin(ADAPTERS)]
    agrees, conclusion = None, ""
    if len(full) and len(adapters):
        less = bool((adapters["changed_share"] < full["changed_share"].iloc[0]).all())
        swings = bool(full["gains"].iloc[0] > 0 and full["losses"].iloc[0] > 0)
        conclusion = (
            f"{'every adapter method changes' if less else 'not every adapter method changes'} fewer "
            f"off-task scores decisively than full FT; full FT "
            f"{'swings both ways' if swings else 'does not swing both ways'}. "
        )
        agrees = less and swings if _status_of(adjusted) != "insufficient data" else None
    answer = (
        (conclusion[0].upper() + conclusion[1:] if conclusion else "")
        + "Decisive changes against the untuned base, off the training task: "
        + "; ".join(parts)
        + "."
    )
    return _answer("Q4", an, answer, _status_of(adjusted), agrees, adjusted, summary.drop(columns="method_key"))


def _q5(an: Analysis) -> dict:
    cfg = an.cfg
    if cfg.empty:
        return _answer("Q5", an, "No evaluation.", "not answerable", None)
    comps, fastest = [], {}
    for task, group in cfg.groupby("task", sort=False):
        top = an.top(group, "latency_mean_s", False)
        if top is None:
            continue
        fastest[task] = top["config"]
        comps += [
            an.compare(top["config"], other, task, "latency_s")
            for other in group[group["config"] != top["config"]]["config"]
        ]
    if not fastest:
        return _answer("Q5", an, "No latency was measured.", "not answerable", None)
    adjusted = an.adjust(comps, "Q5")
    sets = {}
    for task, top in fastest.items():
        group = cfg[cfg["task"] == task]
        sets[task] = set(_members(top, group, adjusted, task))
    serving = cfg.groupby("config")["eval_res_gb"].max()
    least = serving.min() if serving.notna().any() else math.nan
    low_memory = {c for c, v in serving.items() if memory_equal(v, least)} if pd.notna(least) else None
    cheapest = set.intersection(*sets.values())
    if low_memory is not None:
        cheapest &= low_memory
    smallest = cfg["base_size"].min()
    meta = cfg.drop_duplicates("config").set_index("config")
    target = {c for c in meta.index if meta.loc[c, "method_key"] == "full" and meta.loc[c, "base_size"] == smallest}
    texts = [
        f"{_task(t)}: fastest {fastest[t]}"
        + (f", not beaten by it: {', '.join(sorted(s - {fastest[t]}))}" if len(s) > 1 else " (decisively)")
        for t, s in sets.items()
    ]
    memory_text = (
        f"lowest serving memory ({least:.3g} GB, within 5 %): {', '.join(sorted(low_memory))}"
        if low_memory is not None
        else "serving memory not measured"
    )
    head = (
        f"Cheapest on every task and in memory: {', '.join(sorted(cheapest))}"
        if cheapest
        else "No configuration is both the fastest on every task and the lightest"
    )
    answer = f"{head}. {'; '.join(texts)}; {memory_text}."
    status = _status_of(adjusted)
    if status == "decisive" and (len(cheapest) != 1):
        status = "tie"
    agrees = None if status == "insufficient data" else bool(cheapest & target) if cheapest else False
    figures = cfg.pivot_table(index="config", columns="task", values="latency_mean_s", aggfunc="first")
    figures.columns = [f"{c}_latency_s" for c in figures.columns]
    figures["serving_gb"] = serving
    figures["cheapest"] = [c in cheapest for c in figures.index]
    return _answer("Q5", an, answer, status, agrees, adjusted, figures.reset_index())


CAP_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _q6(an: Analysis) -> dict:
    dom = an.in_domain()
    if dom.empty:
        return _answer("Q6", an, "No trained configuration was evaluated on its training task.", "not answerable", None)
    memory = _memory_column(dom)
    if dom[memory].notna().sum() == 0:
        imported = len(an.records.trains) and an.records.trains["imported"].astype(bool).all()
        why = " (the reference study did not publish it)" if imported else ""
        return _answer(
            "Q6", an, f"Training memory was not measured{why}, so no cap can be applied.", "not answerable", None
        )
    values = dom.drop_duplicates("config")[memory].dropna()
    caps = sorted({float(np.quantile(values, q)) for q in CAP_QUANTILES})
    comps, plan = [], []
    for train_task, group in dom.groupby("train_task", sort=False):
        for cap in caps:
            fit = group[group[memory] <= cap * (1 + 1e-9)]
            top = _best_set(an, fit, train_task, comps, tiebreak=memory)
            if top is not None:
                plan.append((train_task, cap, fit, top["config"]))
    adjusted = an.adjust(comps, "Q6").drop_duplicates(subset=["a", "b", "task"])
    rows, sequences = [], {}
    for train_task, cap, fit, top in plan:
        members = _members(top, fit, adjusted, train_task)
        methods = sorted({fit.loc[fit["config"] == m, "method_key"].iloc[0] for m in members})
        rows.append(
            {
                "train_task": train_task,
                "cap_gb": cap,
                "n_fit": len(fit),
                "top": top,
                "best_set": ", ".join(members),
                "methods": ", ".join(METHOD_LABELS.get(m, m) for m in methods),
            }
        )
        sequences.setdefault(train_task, []).append(methods)
    figures = pd.DataFrame(rows)
    texts = [
        f"{_task(t)}: " + " → ".join("/".join(METHOD_LABELS.get(m, m) for m in ms) for ms in seq)
        for t, seq in sequences.items()
    ]
    label = "allocated" if memory == "train_all_gb" else "resident (RSS on a CPU)"
    answer = (
        f"Best in-domain efficacy from the hardest training-memory cap ({label}) to the loosest (caps "
        + ", ".join(f"{c:.3g}" for c in caps)
        + " GB): "
        + "; ".join(texts)
        + "."
    )
    hardest_vera = all(seq[0] == ["vera"] for seq in sequences.values())
    loosest_full = all("full" in seq[-1] for seq in sequences.values())
    status = _status_of(adjusted) if len(adjusted) else "tie"
    agrees = (
        True
        if hardest_vera and loosest_full
        else (False if any("vera" not in seq[0] for seq in sequences.values()) else None)
    )
    return _answer("Q6", an, answer, status, agrees, adjusted, figures)


def _q7(an: Analysis) -> dict:
    comps, outcome = [], {}
    dom = an.in_domain()
    adapters = dom[dom["method_key"].isin(ADAPTERS)]
    for r in adapters.itertuples():
        base_cfg = an.untuned(r.base)
        if base_cfg is None or an.row(base_cfg, r.train_task) is None:
            continue
        comps += [
            an.compare(r.config, base_cfg, r.train_task),
            an.compare(r.config, base_cfg, r.train_task, "latency_s"),
        ]
    if not comps:
        return _answer(
            "Q7",
            an,
            "No adapter configuration next to an untuned model of the same base on its training task.",
            "not answerable",
            None,
        )
    adjusted = an.adjust(comps, "Q7")
    texts = []
    for task, group in adjusted.groupby("task", sort=False):
        worth = []
        for config, pair in group.groupby("a", sort=False):
            eff = pair[pair["metric"] != "latency_s"]
            lat = pair[pair["metric"] == "latency_s"]
            better = len(eff) and _won(eff.iloc[0], "a")
            faster = len(lat) and _won(lat.iloc[0], "a")
            worse = len(eff) and _won(eff.iloc[0], "b")
            if better or (faster and not worse):
                worth.append(f"{config} ({'efficacy' if better else 'latency'})")
        outcome[task] = bool(worth)
        texts.append(
            f"{_task(task)}: "
            + (
                f"yes — {', '.join(worth)}"
                if worth
                else "no adapter is decisively better or faster than the untuned base"
            )
        )
    answer = "; ".join(texts) + "."
    status = _status_of(adjusted)
    if status == "decisive" and not all(outcome.values()):
        undecided = adjusted[(adjusted["task"].isin([t for t, v in outcome.items() if not v])) & ~adjusted["decisive"]]
        status = "tie" if len(undecided) else status
    expected = {"openmath": True, "squad_v2": False}
    agrees = (
        None
        if status == "insufficient data" or not set(expected) <= set(outcome)
        else all(outcome[t] == v for t, v in expected.items())
    )
    return _answer("Q7", an, answer, status, agrees, adjusted)


def _q8(an: Analysis) -> dict:
    dom = an.in_domain()
    comps, notes, memory_rows = [], [], []
    serving = an.cfg.groupby("config")["eval_res_gb"].max()
    for (train_task, base), group in dom.groupby(["train_task", "base"], sort=False):
        full = group[group["method_key"] == "full"]
        adapters = group[group["method_key"].isin(ADAPTERS)]
        if full.empty:
            if len(adapters):
                failed = an.failed_in(train_task=train_task, methods=("full",), base=base)
                notes.append(f"full FT on {_task(train_task)} {'failed' if failed else 'was not run'}")
            continue
        f = full["config"].iloc[0]
        for other in adapters["config"]:
            comps += [an.compare(f, other, train_task), an.compare(f, other, train_task, "latency_s")]
            same = memory_equal(serving.get(f), serving.get(other))
            memory_rows.append(
                {
                    "full": f,
                    "adapter": other,
                    "full_gb": serving.get(f),
                    "adapter_gb": serving.get(other),
                    "full_more_memory": None if same is None else (not same and serving[f] > serving[other]),
                }
            )
    if not comps:
        return _answer(
            "Q8",
            an,
            "No training task with both full FT and an adapter." + (f" ({'; '.join(notes)}.)" if notes else ""),
            "not answerable",
            None,
        )
    adjusted = an.adjust(comps, "Q8")
    quality = adjusted[adjusted["metric"] != "latency_s"]
    speed = adjusted[adjusted["metric"] == "latency_s"]
    q_wins, q_losses = int((quality["better"] == "a").sum()), int((quality["better"] == "b").sum())
    s_wins, s_losses = int((speed["better"] == "a").sum()), int((speed["better"] == "b").sum())
    memory = pd.DataFrame(memory_rows)
    heavier = int((memory["full_more_memory"] == True).sum()) if len(memory) else 0  # noqa: E712
    dominates = q_wins == len(quality) and s_losses == 0 and heavier == 0
    answer = (
        f"{'Yes' if dominates else 'No'}. Quality (in-domain efficacy): full FT better in {q_wins}, worse in "
        f"{q_losses}, tied in {len(quality) - q_wins - q_losses} of {len(quality)} comparisons. Speed and "
        f"serving: faster in {s_wins}, slower in {s_losses} of {len(speed)}; more serving memory than "
        f"{heavier} adapters (beyond 5 %)."
    )
    ties = quality[quality["verdict"] == "tie"]
    if len(ties):
        answer += " Ties: " + "; ".join(describe(c) for _, c in ties.iterrows()) + "."
    if notes:
        answer += f" ({'; '.join(notes)}.)"
    status = _status_of(adjusted)
    if status == "decisive" and not quality["decisive"].all():
        status = "tie"
    agrees = True if dominates else (False if q_losses or s_losses or heavier else None)
    if status == "insufficient data":
        agrees = None
    return _answer("Q8", an, answer, status, agrees, adjusted, memory)


def _q9(an: Analysis) -> dict:
    cfg = an.cfg
    if cfg.empty:
        return _answer("Q9", an, "No evaluation.", "not answerable", None)
    comps, parts = [], []
    for task, group in cfg.groupby("task", sort=False):
        g = group.dropna(subset=["score", "latency_mean_s"]).copy()
        if g.empty:
            continue
        objectives = {"score": True, "latency_mean_s": False}
        if g["eval_res_gb"].notna().all():
            objectives["eval_res_gb"] = False
        g["pareto"] = pareto_front(g, objectives)
        g["dominator"] = None
        for i, row in g[~g["pareto"]].iterrows():
            ge = np.all([(g[c] >= row[c]) if hib else (g[c] <= row[c]) for c, hib in objectives.items()], axis=0)
            gt = np.any([(g[c] > row[c]) if hib else (g[c] < row[c]) for c, hib in objectives.items()], axis=0)
            dominators = g[ge & gt]
            d = dominators.loc[dominators["score"].idxmax()]
            g.loc[i, "dominator"] = d["config"]
            comps += [
                an.compare(d["config"], row["config"], task),
                an.compare(d["config"], row["config"], task, "latency_s"),
            ]
        parts.append(g)
    if not parts:
        return _answer("Q9", an, "No efficacy and latency measured together.", "insufficient data", None)
    adjusted = an.adjust(comps, "Q9")
    figures = pd.concat(parts)
    classes = []
    for _, row in figures.iterrows():
        if row["pareto"]:
            classes.append("non-dominated")
            continue
        hit = adjusted[
            (adjusted["a"] == row["dominator"]) & (adjusted["b"] == row["config"]) & (adjusted["task"] == row["task"])
        ]
        lighter = memory_equal(an.row(row["dominator"], row["task"])["eval_res_gb"], row["eval_res_gb"]) is False
        classes.append(
            "dominated" if any(_won(c, "a") for _, c in hit.iterrows()) or lighter else "possibly non-dominated"
        )
    figures["front"] = classes
    on = figures[figures["front"] != "dominated"]
    untuned = figures[figures["method_key"] == "base"]
    largest = untuned["base_size"].max() if len(untuned) else math.nan
    smallest = figures["base_size"].min()
    roles = {
        "larger base": bool(
            untuned["base"].nunique() > 1 and (on["method_key"].eq("base") & on["base_size"].eq(largest)).any()
        ),
        "full FT on the small base": bool((on["method_key"].eq("full") & on["base_size"].eq(smallest)).any()),
        "SQuAD adapter": bool((on["method_key"].isin(ADAPTERS) & on["train_task"].eq("squad_v2")).any()),
    }
    texts = []
    for task, g in figures.groupby("task", sort=False):
        front = g[g["front"] == "non-dominated"]["config"].tolist()
        maybe = g[g["front"] == "possibly non-dominated"]["config"].tolist()
        texts.append(f"{_task(task)}: {', '.join(front)}" + (f" (possibly also: {', '.join(maybe)})" if maybe else ""))
    present = [r for r, ok in roles.items() if ok]
    answer = (
        "Pareto fronts over efficacy, latency and serving memory — "
        + "; ".join(texts)
        + f". The study's roles on a front: {', '.join(present) if present else 'none'}."
    )
    if "eval_res_gb" not in figures.columns or figures["eval_res_gb"].isna().any():
        answer += " (Serving memory not measured for every configuration: fronts over efficacy and latency.)"
    status = "decisive" if (figures["front"] != "possibly non-dominated").all() else "tie"
    if not comps:
        status = "decisive"
    agrees = all(roles.values())
    columns = [
        "task",
        "config",
        "method",
        "base",
        "train_task",
        "score",
        "latency_mean_s",
        "eval_res_gb",
        "front",
        "dominator",
    ]
    return _answer("Q9", an, answer, status, agrees, adjusted, figures[columns])


def _share(values: pd.Series, higher: bool) -> pd.Series:
    """Each value as a share of the best (1 = the best), for ratio-scale figures."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    if v.notna().sum() == 0:
        return v
    best = v.max() if higher else v.min()
    if best <= 0:
        return pd.Series(np.where(v == best, 1.0, 0.0), index=v.index)
    return v / best if higher else best / v


_QUESTION_FUNCTIONS = (_q1, _q2, _q3, _q4, _q5, _q6, _q7, _q8, _q9)


def answer_questions(
    records: StudyRecords, *, alpha: float = ALPHA, min_n: int = MIN_N, n_boot: int = N_BOOT, seed: int = 0
) -> list[dict]:
    """The nine answers: ``id``, ``question``, ``answer``, ``status``, ``agrees_with_reference``,
    ``reference_answer``, ``comparisons`` (every comparison behind it, adjusted within the
    question), ``figures`` (the question's compact table) and ``how``."""
    an = Analysis(records, alpha=alpha, min_n=min_n, n_boot=n_boot, seed=seed)
    answers = [fn(an) for fn in _QUESTION_FUNCTIONS]
    for answer in answers:  # a failed configuration is never silently left out
        answer["answer"] += _failed_note(an.failed)
    return answers


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if value is pd.NA or value is None:
        return None
    return value


def questions_json(answers: list[dict]) -> list[dict]:
    """The answers as plain JSON objects (``questions.json``)."""
    out = []
    for a in answers:
        comparisons = [{k: _json_value(v) for k, v in row.items()} for row in a["comparisons"].to_dict("records")]
        out.append(
            {
                "id": a["id"],
                "question": a["question"],
                "answer": a["answer"],
                "status": a["status"],
                "agrees_with_reference": a["agrees_with_reference"],
                "reference_answer": a["reference_answer"],
                "how": a["how"],
                "comparisons": comparisons,
            }
        )
    return out


def write_questions(answers: list[dict], path: str | Path) -> Path:
    """Write ``questions.json`` (a list of nine objects) atomically."""
    return write_json(Path(path), questions_json(answers))


def answers_table(answers: list[dict]) -> pd.DataFrame:
    """The nine answers in one table: id, question, answer, status, agreement with the study."""
    return pd.DataFrame(
        [
            {
                "id": a["id"],
                "question": a["question"],
                "answer": a["answer"],
                "status": a["status"],
                "reference_answer": a["reference_answer"],
                "agrees": a["agrees_with_reference"],
            }
            for a in answers
        ]
    )


def how_table(*, alpha: float = ALPHA, min_n: int = MIN_N, n_boot: int = N_BOOT) -> pd.DataFrame:
    """How each answer is computed: measure, resampling unit, interval, correction, minimum n."""
    common = {
        "measure": EFFICACY_NOTE + "; latency: batch-1 seconds per timed item",
        "resampling unit": "cluster: an item with all its seeds (SQuAD v2: all questions on one passage)",
        "interval": f"estimate ± z·SE, SE from {n_boot} cluster-bootstrap replicates (counts: Agresti-Caffo)",
        "correction": f"Holm within the question, α = {alpha}; the interval is at the level Holm tests it at",
        "minimum n": f"{min_n} clusters, else 'insufficient data'",
    }
    return pd.DataFrame([{"id": qid, "question": q, "comparisons": HOW[qid], **common} for qid, q, _ in QUESTIONS])


def compare_protocols(
    answers_a: list[dict], answers_b: list[dict], *, labels: tuple[str, str] = ("a", "b")
) -> pd.DataFrame:
    """Per question, two sets of answers side by side (e.g. this study and the imported reference)."""
    la, lb = labels
    by_id_b = {a["id"]: a for a in answers_b}
    rows = []
    for qa in answers_a:
        qb = by_id_b.get(qa["id"], {})
        ga, gb = qa.get("agrees_with_reference"), qb.get("agrees_with_reference")
        rows.append(
            {
                "id": qa["id"],
                "question": qa["question"],
                "reference_answer": qa["reference_answer"],
                f"answer_{la}": qa.get("answer"),
                f"answer_{lb}": qb.get("answer"),
                f"status_{la}": qa.get("status"),
                f"status_{lb}": qb.get("status"),
                f"agrees_{la}": ga,
                f"agrees_{lb}": gb,
                "agreement_changed": None if ga is None or gb is None else ga != gb,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "HOW",
    "QUESTIONS",
    "STATUSES",
    "answer_questions",
    "answers_table",
    "compare_protocols",
    "describe",
    "how_table",
    "questions_json",
    "write_questions",
]


def question_docs() -> dict[str, str]:
    """Each question's definition, as the report states it."""
    return dict(HOW)
