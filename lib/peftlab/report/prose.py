"""The report's sentences: an answer's headline, a comparison as a sentence, the key
comparisons and verdict counts of a question, what the study compared, and its caveats.

Every sentence is formatted from the records and the answers; nothing here decides an answer.
"""

from __future__ import annotations

import html
import math
import re

import pandas as pd

from peftlab.analysis.comparisons import MEASURES
from peftlab.analysis.study_records import METHOD_LABELS, StudyRecords
from peftlab.methods.registry import METHODS
from peftlab.report.cells import (
    MEASURE_SHORT,
    MEASURE_WORDS,
    TASK_ORDER,
    digits_of,
    missing,
    number,
    relabel,
    task_name,
)

STATUS_CLASS = {"decisive": "decisive", "tie": "tie", "insufficient data": "insufficient", "not answerable": "na"}
AGREEMENT_TEXT = {True: "agrees", False: "differs", None: "undecided"}
AGREEMENT_SENTENCE = {
    True: "agrees with the reference study",
    False: "differs from the reference study",
    None: "agreement with the reference study undecided",
}


# --------------------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------------------


def _split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, never split inside parentheses."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")" and depth > 0
        if ch == "." and depth == 0 and (i + 1 == len(text) or text[i + 1] == " "):
            out.append(text[start : i + 1].strip())
            start = i + 1
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def _drop_long_parentheses(text: str, longest: int = 30) -> str:
    """Parenthesised details longer than ``longest`` characters removed (configuration names keep
    theirs: '(OpenMath)')."""
    out, depth, start, kept = [], 0, 0, []
    for i, ch in enumerate(text):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                kept.append((start, i + 1))
    cut = [(s, e) for s, e in kept if e - s > longest]
    pos = 0
    for s, e in cut:
        out.append(text[pos:s].rstrip())
        pos = e
    out.append(text[pos:])
    return re.sub(r"\s+([.,;:])", r"\1", "".join(out))


def headline(answer: dict, labels: dict[str, str] | None = None, *, limit: int = 230) -> str:
    """The answer in one sentence: its first sentence without long parenthesised details (a one-word
    first sentence keeps the next one), configuration names shortened; Q9 states its fronts' sizes."""
    labels = labels or {}
    text = answer["answer"]
    sentences = _split_sentences(text)
    if answer["id"] == "Q9" and isinstance(answer.get("figures"), pd.DataFrame) and "front" in answer["figures"]:
        figures = answer["figures"]
        sizes = ", ".join(
            f"{task_name(t)} {int((g['front'] == 'non-dominated').sum())} of {len(g)}"
            for t, g in figures.groupby("task", sort=False)
        )
        roles = next((s for s in sentences if s.startswith("The study's roles")), "")
        first = f"Non-dominated configurations: {sizes}."
        return relabel(f"{first} {roles}".strip(), labels)
    if not sentences:
        return ""
    first = sentences[0]
    if len(first.split()) <= 2 and len(sentences) > 1:
        first = f"{first} {sentences[1]}"
    first = relabel(_drop_long_parentheses(first), labels)
    if len(first) > limit:
        cut = first.rfind(";", 0, limit)
        cut = cut if cut > 40 else first.rfind(",", 0, limit)
        first = first[:cut].rstrip() + "; …" if cut > 40 else first[:limit].rstrip() + " …"
    return first


def _gain_terms(c: pd.Series) -> tuple[float, float, float, bool]:
    """(gain of a over b, interval low, high, lower-is-better) in the measure's unit."""
    measure = MEASURES.get(c["metric"]) if isinstance(c.get("metric"), str) else None
    lower = bool(measure and not measure.higher_is_better)
    diff, low, high = c["diff"], c["ci_low"], c["ci_high"]
    if lower:
        return -diff, (-high if not missing(high) else math.nan), (-low if not missing(low) else math.nan), True
    return diff, low, high, False


def comparison_sentence(c: pd.Series | dict, labels: dict[str, str] | None = None) -> str:
    """A comparison for reading: 'Full FT (SQuAD v2) beats DoRA r512 (SQuAD v2) on SQuAD v2 by
    18.5 EM points [10.0, 26.7], n = 200'; latency reads 'is faster than … by 0.880 s'."""
    labels = labels or {}
    c = pd.Series(c)
    a, b = labels.get(c["a"], c["a"]), labels.get(c["b"], c["b"])
    task = task_name(c["task"])
    metric = c.get("metric")
    words = MEASURE_WORDS.get(metric, "")
    d = digits_of(metric)
    n = "" if missing(c.get("n")) or not c.get("n") else f", n = {int(c['n'])}"
    if c["verdict"] == "insufficient data" or missing(c["diff"]):
        note = f" ({c['note']})" if isinstance(c.get("note"), str) and c.get("note") else ""
        return f"{a} vs {b} on {task}: insufficient data{note}"
    gain, low, high, lower = _gain_terms(c)
    if c["verdict"] == "tie":
        mde = (
            ""
            if missing(c.get("mde"))
            else f"; a difference over {number(c['mde'], d)} {words} would have been detected"
        )
        return (
            f"{a} and {b} tie on {task} ({MEASURE_SHORT.get(metric, metric)}): {number(c['diff'], d, signed=True)} "
            f"{words} [{number(c['ci_low'], d)}, {number(c['ci_high'], d)}]{n}{mde}"
        )
    if gain < 0:
        a, b = b, a
        gain, low, high = -gain, -high, -low
    verb = "is faster than" if lower and metric == "latency_s" else ("needs fewer than" if lower else "beats")
    return f"{a} {verb} {b} on {task} by {number(gain, d)} {words} [{number(low, d)}, {number(high, d)}]{n}"


def key_comparisons(comparisons: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """The comparisons a reader should see first: the largest decisive efficacy differences, then
    decisive latency ones, then the tightest tie."""
    if comparisons is None or comparisons.empty:
        return pd.DataFrame()
    c = comparisons.copy()
    c["_efficacy"] = c["metric"] != "latency_s"
    c["_size"] = c["diff"].abs()
    decisive = c[c["decisive"].astype(bool)].sort_values(["_efficacy", "_size"], ascending=[False, False])
    first = ~decisive["b"].duplicated()  # one per opponent first, so different contrasts show
    decisive = pd.concat([decisive[first], decisive[~first]])
    ties = c[c["verdict"] == "tie"].sort_values(["_efficacy", "mde"], ascending=[False, True])
    picked = pd.concat([decisive.head(k - 1 if len(ties) else k), ties.head(max(1, k - min(len(decisive), k - 1)))])
    return picked.head(k).drop(columns=["_efficacy", "_size"])


def verdict_counts(comparisons: pd.DataFrame) -> str:
    if comparisons is None or comparisons.empty:
        return ""
    n = len(comparisons)
    decisive = int(comparisons["decisive"].astype(bool).sum())
    ties = int((comparisons["verdict"] == "tie").sum())
    short = int((comparisons["verdict"] == "insufficient data").sum())
    parts = [f"{decisive} decisive", f"{ties} tie{'s' if ties != 1 else ''}"]
    if short:
        parts.append(f"{short} with insufficient data")
    return f"Of {n} comparison{'s' if n != 1 else ''} (Holm-adjusted within the question): {', '.join(parts)}."


# --------------------------------------------------------------------------------------
# What was compared, and the caveats
# --------------------------------------------------------------------------------------


def _join(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def study_facts(records: StudyRecords) -> dict:
    """What the study compared, from its records: base models, methods and ranks, tasks, items,
    seeds, protocol, device, counts."""
    ev, tr = records.evals, records.trains
    every = pd.concat([ev, tr], ignore_index=True) if len(tr) else ev
    trained = every[every["trained"].astype(bool)] if len(every) else every
    untuned = ev[~ev["trained"].astype(bool)] if len(ev) else ev
    methods = []
    for key in METHODS:
        hit = trained[trained["method_key"] == key] if len(trained) else trained
        if hit.empty:
            continue
        ranks = sorted({int(r) for r in hit["rank"].dropna()})
        methods.append(METHOD_LABELS[key] + (f" (r = {', '.join(map(str, ranks))})" if ranks else ""))
    items = ev[ev["status"] == "ok"].groupby("task")["n_items"].agg(lambda s: sorted({int(v) for v in s.dropna()}))
    seeds = sorted({int(s) for s in trained["seed"].dropna()}) if len(trained) else []
    kinds = set(ev["memory_kind"].dropna()) | (set(tr["memory_kind"].dropna()) if len(tr) else set())
    failed = int((ev["status"] != "ok").sum()) + (int((tr["status"] != "ok").sum()) if len(tr) else 0)
    imported = bool(len(ev) and ev["imported"].fillna(False).astype(bool).all())
    return {
        "trained_bases": sorted(set(trained["base"].dropna())) if len(trained) else [],
        "untuned_bases": sorted(set(untuned["base"].dropna())) if len(untuned) else [],
        "methods": methods,
        "train_tasks": [t for t in TASK_ORDER if len(trained) and t in set(trained["train_task"].dropna())],
        "eval_tasks": [t for t in TASK_ORDER if t in set(ev["task"])],
        "items": {t: v for t, v in items.items()},
        "seeds": seeds,
        "protocols": sorted(set(ev["protocol"].dropna())),
        "devices": sorted(kinds),
        "dtypes": sorted({str(d) for d in ev["dtype"].dropna()}) if "dtype" in ev else [],
        "configurations": int(every["config"].nunique()) if len(every) else 0,
        "trained_runs": int(tr["model"].nunique()) if len(tr) else 0,
        "evaluations": len(ev),
        "failed": failed,
        "imported": imported,
    }


DEVICE_WORDS = {"cuda": "GPU (CUDA)", "cpu-rss": "CPU"}


def compared_sentences(facts: dict) -> list[str]:
    """The study in a few sentences: what was trained, evaluated and how."""
    bases = _join(facts["trained_bases"]) or "no base model"
    untuned = _join(facts["untuned_bases"])
    items = _join(
        [f"{task_name(t)} ({'/'.join(map(str, facts['items'].get(t, []))) or '?'} items)" for t in facts["eval_tasks"]]
    )
    seeds = facts["seeds"]
    seed_text = (
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))})"
        if seeds
        else "no trained run"
    )
    devices = _join([DEVICE_WORDS.get(d, d) for d in facts["devices"]]) or "an unrecorded device"
    out = [
        f"<b>Trained:</b> {html.escape(bases)} with {html.escape(_join(facts['methods']) or 'no method')}, on "
        f"{html.escape(_join([task_name(t) for t in facts['train_tasks']]) or 'no task')}; {html.escape(seed_text)} "
        "per configuration.",
        f"<b>Untuned baselines:</b> {html.escape(untuned or 'none')}.",
        f"<b>Evaluated on:</b> {html.escape(items or 'nothing')}, every model on every task.",
        f"<b>Protocol:</b> {html.escape(_join(facts['protocols']) or '?')}; measured on "
        f"{html.escape(devices)}{' in ' + html.escape(_join(facts['dtypes'])) if facts['dtypes'] else ''}; "
        f"{facts['configurations']} configurations, {facts['trained_runs']} training runs, {facts['evaluations']} "
        f"evaluations, {facts['failed']} failed record{'s' if facts['failed'] != 1 else ''}"
        + (" (imported from the published results)." if facts["imported"] else "."),
    ]
    return out


PROTOCOL_CAVEAT = {
    "reference": (
        "the reference protocol reproduces the published study's defects on purpose (learning rate 1e-5 for "
        "every method, training targets without the \\boxed{} format the evaluation parses), so adapters "
        "barely move from their base"
    ),
    "corrected": (
        "the corrected protocol uses per-method learning rates and one prompt format for training and "
        "evaluation, so its answers are not a replication of the published numbers"
    ),
}


def caveats(records: StudyRecords, answers: list[dict]) -> list[str]:
    """The main caveats, computed from the records and the answers."""
    facts = study_facts(records)
    out = []
    all_comparisons = (
        pd.concat([a["comparisons"] for a in answers if len(a["comparisons"])], ignore_index=True)
        if any(len(a["comparisons"]) for a in answers)
        else pd.DataFrame()
    )
    sizes = sorted({v for vs in facts["items"].values() for v in vs})
    if sizes:
        text = f"Sample size: {'–'.join(map(str, [sizes[0], sizes[-1]] if len(sizes) > 1 else sizes))} items per task"
        if len(all_comparisons):
            eff = all_comparisons[(all_comparisons["metric"] != "latency_s") & all_comparisons["mde"].notna()]
            pct = eff[eff["unit"] == "%"]
            if len(pct):
                text += (
                    f"; an efficacy difference must exceed {number(pct['mde'].median(), 1)} points (median over "
                    f"{len(pct)} comparisons; range {number(pct['mde'].min(), 1)}–{number(pct['mde'].max(), 1)}) "
                    "to be detected with 80 % power"
                )
            short = int((all_comparisons["verdict"] == "insufficient data").sum())
            if short:
                text += f"; {short} of {len(all_comparisons)} comparisons have too few items to be tested"
        out.append(text + ".")
    seeds = facts["seeds"]
    if len(seeds) <= 1 and facts["trained_runs"]:
        out.append(
            "One training seed per configuration: training-to-training variation is not measured, so intervals "
            "cover item sampling only."
        )
    devices = facts["devices"]
    if "cpu-rss" in devices:
        out.append(
            "Measured on a CPU: latency is CPU time and memory is the process's peak resident set size (RSS), "
            "not GPU memory; neither compares with a GPU study's figures."
        )
    elif "cuda" in devices:
        out.append(
            "Measured on a GPU (CUDA): memory is the peak reserved / allocated by PyTorch; latency depends on that GPU."
        )
    if facts["imported"]:
        out.append(
            "Imported published results: no per-item scores, so efficacy is the accuracy / exact match the "
            "published counts give and intervals are unpaired (conservative); training memory was not "
            "published. The format-free measures (log-likelihood choice, the flexible reading of a reply) and "
            "the format share need the replies and the model, so they are unavailable for these records: the "
            "answers rest on the study's own scores, which mix the skill with the answer format."
        )
    rests = [
        f"{a['id']}: " + "; ".join(f"{role} ({', '.join(measures)})" for role, measures in a["rests_on"].items())
        for a in answers
        if a["status"] == "decisive" and a.get("rests_on")
    ]
    if rests:
        out.append(
            "What each decisive answer rests on (skill: efficacy without the answer format where the items have "
            "it; format: replies in the answer format; cost: latency or tokens): " + " · ".join(rests) + "."
        )
    out += list(dict.fromkeys(note + "." for a in answers for note in a.get("notes", [])))
    for protocol in facts["protocols"]:
        if protocol in PROTOCOL_CAVEAT:
            out.append(f"Protocol: {PROTOCOL_CAVEAT[protocol]}.")
    unanswered = [a["id"] for a in answers if a["status"] in ("not answerable", "insufficient data")]
    if unanswered:
        out.append(
            f"Not decided by this study: {', '.join(unanswered)} "
            "(not answerable or insufficient data; see their sections)."
        )
    if facts["failed"]:
        out.append(
            f"{facts['failed']} record{'s' if facts['failed'] != 1 else ''} failed; the questions compare "
            "only what finished (see Failed runs)."
        )
    return out
