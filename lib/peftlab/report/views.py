"""The report's presentation: findings first, one short section per question, figures with
numbered captions, the full tables in an appendix.

Nothing here decides an answer: every sentence and table is formatted from the records
(``study_records``), the configurations (``comparisons.configurations``) and the answers
(``questions.answer_questions``). Tables have human headers with units, numbers rounded to
their measure's precision, a dash where a value is missing, and short configuration labels.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from peftlab.analysis.comparisons import MEASURES, configurations
from peftlab.analysis.questions import HOW, QUESTIONS, how_table
from peftlab.analysis.study_records import METHOD_LABELS, TASK_LABELS, StudyRecords, provenance
from peftlab.core.stats import pareto_front
from peftlab.methods.registry import METHODS
from peftlab.report import plots
from peftlab.report.plots import pareto_numbers, plot_pareto, plot_transfer, transfer_matrix
from peftlab.tasks.registry import TASKS

DASH = "—"
MAX_ROWS = 12  # a question's compact table; the appendix has every row
STATUS_CLASS = {"decisive": "decisive", "tie": "tie", "insufficient data": "insufficient", "not answerable": "na"}
AGREEMENT_TEXT = {True: "agrees", False: "differs", None: "undecided"}
AGREEMENT_SENTENCE = {
    True: "agrees with the reference study",
    False: "differs from the reference study",
    None: "agreement with the reference study undecided",
}
TASK_ORDER = tuple(TASKS)
MEASURE_WORDS = {name: m.words for name, m in MEASURES.items()}
MEASURE_SHORT = {name: m.short for name, m in MEASURES.items()}
# Figure sizes in print: at most this wide and high (mm), so a figure never takes more than half a page.
PRINT_WIDTH_MM, PRINT_HEIGHT_MM = 270.0, 82.0


class Html(str):
    """HTML text that a notebook shows rendered."""

    def _repr_html_(self) -> str:
        return str(self)


def _shown(method):
    """A ReportView method whose HTML a notebook cell shows."""
    import functools

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return Html(method(*args, **kwargs))

    return wrapper


# --------------------------------------------------------------------------------------
# Cells and tables
# --------------------------------------------------------------------------------------


def missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def number(value: Any, digits: int = 2, *, signed: bool = False) -> str:
    """A number for reading: fixed digits, thousands separators, a dash when missing."""
    if missing(value):
        return DASH
    if isinstance(value, (bool,)):
        return yes_no(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    text = f"{v:{'+' if signed else ''},.{digits}f}"
    return text.replace("-", "−")


def yes_no(value: Any) -> str:
    if missing(value):
        return DASH
    return "yes" if bool(value) else "no"


def interval(diff: Any, low: Any, high: Any, digits: int) -> str:
    """'+12.4 [6.1, 18.9]' (a dash for a missing bound)."""
    if missing(diff):
        return DASH
    text = number(diff, digits, signed=True)
    if not missing(low) and not missing(high):
        text += f" [{number(low, digits)}, {number(high, digits)}]"
    return text


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: Callable[[Any], str] | None = None  # default: text, numbers with 2 digits
    text: bool = False  # left-aligned


def cell(value: Any, fmt: Callable[[Any], str] | None = None) -> str:
    if fmt is not None:
        return fmt(value)
    if missing(value):
        return DASH
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return yes_no(value)
    if isinstance(value, (int,)) or type(value).__name__.startswith("int"):
        return f"{int(value):,}"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return number(value, 2)
    return str(value)


def table_html(frame: pd.DataFrame, columns: list[Column], *, classes: str = "compact", note: str = "") -> str:
    """A formatted HTML table: human headers, formatted cells, text left and numbers right."""
    columns = [c for c in columns if c.key in frame.columns]
    out = [f'<table class="{classes}"><thead><tr>']
    out += [f'<th class="{"text" if c.text else "num"}">{html.escape(c.header)}</th>' for c in columns]
    out.append("</tr></thead><tbody>")
    for _, row in frame.iterrows():
        out.append(
            "<tr>"
            + "".join(
                f'<td class="{"text" if c.text else "num"}">{html.escape(cell(row[c.key], c.fmt))}</td>'
                for c in columns
            )
            + "</tr>"
        )
    out.append("</tbody></table>")
    if note:
        out.append(f'<p class="table-note">{html.escape(note)}</p>')
    return "".join(out)


def digits_of(metric: Any) -> int:
    measure = MEASURES.get(metric) if isinstance(metric, str) else None
    return measure.digits if measure else 2


def task_name(task: Any) -> str:
    return DASH if missing(task) else TASK_LABELS.get(task, str(task))


# --------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------


def short_labels(configs: pd.DataFrame) -> dict[str, str]:
    """A short readable label per configuration: the base model is dropped from trained
    configurations when every trained configuration shares one base ('LoRA r256 (OpenMath)');
    untuned models keep it ('Qwen3-1.7B untuned')."""
    if configs is None or configs.empty:
        return {}
    meta = configs.drop_duplicates("config")
    trained = meta[meta["trained"].astype(bool)]
    one_base = trained["base"].nunique() <= 1
    labels = {}
    for _, row in meta.iterrows():
        config = str(row["config"])
        base = str(row["base"])
        if row["trained"] and one_base and config.startswith(base + " "):
            labels[config] = config[len(base) + 1 :]
        else:
            labels[config] = config
    return labels


def relabel(text: str, labels: dict[str, str]) -> str:
    """Every configuration name in ``text`` replaced by its short label (longest names first)."""
    for config in sorted(labels, key=len, reverse=True):
        if labels[config] != config:
            text = text.replace(config, labels[config])
    return text


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
            "published."
        )
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


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def figure_html(fig, *, number_: int, caption: str, anchor: str, extra: str = "") -> str:
    """A matplotlib figure as an embedded PNG inside <figure> with a numbered caption; in print
    it is scaled to fit PRINT_WIDTH_MM × PRINT_HEIGHT_MM."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    dpi = 150
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = buffer.getvalue()
    width_px, height_px = _png_size(data)
    width_mm, height_mm = width_px / dpi * 25.4, height_px / dpi * 25.4
    scale = min(1.0, PRINT_WIDTH_MM / width_mm, PRINT_HEIGHT_MM / height_mm)
    style = f"width:{width_mm * scale:.1f}mm"
    encoded = base64.b64encode(data).decode()
    return (
        f'<figure id="{anchor}" class="report-figure"><img src="data:image/png;base64,{encoded}" style="{style}" '
        f'alt="Figure {number_}">{extra}<figcaption><b>Figure {number_}.</b> {caption}</figcaption></figure>'
    )


def _png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# --------------------------------------------------------------------------------------
# The report's view of a study
# --------------------------------------------------------------------------------------


CONFIG_COLUMNS = ("config", "a", "b", "lower", "higher", "top", "full", "adapter", "dominator")
FIGURE_HEADERS = {
    "train_task": "Trained on",
    "task": "Task",
    "config": "Configuration",
    "method": "Method",
    "rank": "Rank",
    "base": "Base",
    "score": "Efficacy",
    "latency_mean_s": "Latency (s)",
    "train_res_gb": "Train memory, resident (GB)",
    "train_all_gb": "Train memory, allocated (GB)",
    "balance": "Balance",
    "best_set": "Best set",
    "lower": "Lower rank",
    "higher": "Higher rank",
    "measure": "Measure",
    "low_gb": "Lower rank (GB)",
    "high_gb": "Higher rank (GB)",
    "changes": "Changes > 5 %",
    "comparisons": "Comparisons",
    "gains": "Gains",
    "losses": "Losses",
    "insufficient": "Insufficient data",
    "ties": "Ties",
    "changed_share": "Changed (%)",
    **{f"{name}_latency_s": f"{task.label} latency (s)" for name, task in TASKS.items()},
    "serving_gb": "Serving memory (GB)",
    "cheapest": "Cheapest",
    "cap_gb": "Cap (GB)",
    "n_fit": "Fit under cap",
    "top": "Best",
    "methods": "Methods in best set",
    "full": "Full FT",
    "adapter": "Adapter",
    "full_gb": "Full FT serving (GB)",
    "adapter_gb": "Adapter serving (GB)",
    "full_more_memory": "Full FT heavier",
    "eval_res_gb": "Serving memory (GB)",
    "front": "Front",
    "dominator": "Dominated by",
}
FIGURE_DIGITS = {"balance": 2, "changed_share": 0, "latency_mean_s": 3, **{f"{name}_latency_s": 3 for name in TASKS}}


class ReportView:
    """Formats one study's records and answers for the report; figures are numbered in the order
    the report asks for them."""

    def __init__(self, *, records: StudyRecords, answers: list[dict], study: str = ""):
        self.records, self.answers, self.study = records, answers, study
        self.configs = configurations(records=records)
        self.labels = short_labels(self.configs)
        self._figures = 0
        self._figure_of: dict[str, int] = {}

    # --- small helpers ---------------------------------------------------------------
    def label(self, config: Any) -> str:
        return DASH if missing(config) else self.labels.get(config, str(config))

    def _labels_in(self, value: Any) -> str:
        if missing(value):
            return DASH
        if isinstance(value, str):
            return ", ".join(
                self.label(v.strip()) if v.strip() in self.labels else v.strip() for v in value.split(", ")
            )
        return cell(value)

    def answer(self, qid: str) -> dict:
        return next(a for a in self.answers if a["id"] == qid)

    def _metric_of(self, config: str, task: str) -> str | None:
        hit = self.configs[(self.configs["config"] == config) & (self.configs["task"] == task)]
        return hit["score_metric"].iloc[0] if len(hit) else None

    def _next_figure(self, key: str) -> int:
        if key not in self._figure_of:
            self._figures += 1
            self._figure_of[key] = self._figures
        return self._figure_of[key]

    # --- page 1 ----------------------------------------------------------------------
    @_shown
    def findings_html(self) -> str:
        facts = study_facts(self.records)
        out = ['<section class="findings"><h2 id="findings">Findings</h2><h4>What was compared</h4><ul class="facts">']
        out += [f"<li>{s}</li>" for s in compared_sentences(facts)]
        out.append("</ul><h4>The nine answers</h4>")
        out.append(
            '<table class="answers"><thead><tr><th class="text">Question</th><th class="text">Answer</th>'
            '<th class="text">Verdict</th><th class="text">Reference study</th></tr></thead><tbody>'
        )
        for a in self.answers:
            agree = AGREEMENT_TEXT[a["agrees_with_reference"]]
            out.append(
                f'<tr><td class="text q"><a href="#{a["id"].lower()}">{a["id"]}</a> {html.escape(a["question"])}</td>'
                f'<td class="text">{html.escape(headline(a, self.labels, limit=180))}</td>'
                f'<td class="text"><span class="badge {STATUS_CLASS[a["status"]]}">{html.escape(a["status"])}</span></td>'
                f'<td class="text"><span class="agree-{agree}">{agree}</span>: {html.escape(a["reference_answer"])}'
                "</td></tr>"
            )
        out.append('</tbody></table><h4>Caveats</h4><ul class="caveats">')
        out += [f"<li>{html.escape(c)}</li>" for c in caveats(self.records, self.answers)]
        out.append("</ul></section>")
        return "".join(out)

    @_shown
    def contents_html(self) -> str:
        """The table of contents; the rendered report fills it from the headings."""
        return '<nav class="toc" id="toc"></nav>'

    @_shown
    def questions_html(self) -> str:
        """The nine questions, one short section each."""
        return "".join(self.question_html(a["id"]) for a in self.answers)

    # --- one question ----------------------------------------------------------------
    @_shown
    def question_html(self, qid: str) -> str:
        a = self.answer(qid)
        agree = AGREEMENT_TEXT[a["agrees_with_reference"]]
        sentences = [headline(a, self.labels, limit=400)]
        keys = key_comparisons(a["comparisons"])
        if len(keys):
            sentences.append(
                "Key differences (adjusted intervals): "
                + "; ".join(comparison_sentence(c, self.labels) for _, c in keys.iterrows())
                + "."
            )
        counts = verdict_counts(a["comparisons"])
        if counts:
            sentences.append(counts)
        body = self._question_body(a)
        return (
            f'<section class="question" id="{qid.lower()}"><div class="question-head">'
            f"<h3>{qid}. {html.escape(a['question'])}</h3>"
            f'<p class="verdict"><span class="badge {STATUS_CLASS[a["status"]]}">{html.escape(a["status"])}</span>'
            f' <span class="agree-{agree}">{AGREEMENT_SENTENCE[a["agrees_with_reference"]]}</span> '
            f"(its answer: “{html.escape(a['reference_answer'])}”)</p>"
            f"<p>{' '.join(html.escape(s) for s in sentences)}</p></div>{body}"
            f'<p class="more">Every row and comparison: <a href="#appendix-{qid.lower()}">Appendix, {qid}</a>.</p>'
            "</section>"
        )

    def _question_body(self, a: dict) -> str:
        builder = getattr(self, f"_body_{a['id'].lower()}", None)
        try:
            return builder(a) if builder else ""
        except (KeyError, ValueError, IndexError) as error:  # a table is presentation: never fail the report
            return f'<p class="table-note">No compact table ({html.escape(str(error))}).</p>'

    def _capped(self, frame: pd.DataFrame, columns: list[Column], qid: str, what: str = "rows") -> str:
        note = ""
        if len(frame) > MAX_ROWS:
            note = f"{MAX_ROWS} of {len(frame)} {what} shown; all of them in the appendix ({qid})."
            frame = frame.head(MAX_ROWS)
        return table_html(frame, columns, note=note) if len(frame) else ""

    def _pairs(self, comparisons: pd.DataFrame) -> pd.DataFrame:
        """One row per (a, b, task): efficacy and latency differences with intervals and verdicts."""
        rows = []
        for (a, b, task), g in comparisons.groupby(["a", "b", "task"], sort=False):
            row = {"a": a, "b": b, "task": task, "n": g["n"].max()}
            for kind, hit in (("eff", g[g["metric"] != "latency_s"]), ("lat", g[g["metric"] == "latency_s"])):
                if len(hit):
                    c = hit.iloc[0]
                    row[kind] = (
                        f"{interval(c['diff'], c['ci_low'], c['ci_high'], digits_of(c['metric']))} ({_side_word(c)})"
                    )
                    if kind == "eff":
                        row["measure"] = MEASURE_SHORT.get(c["metric"], c["metric"])
            rows.append(row)
        return pd.DataFrame(rows)

    def _body_q1(self, a: dict) -> str:
        f = a["figures"]
        if f.empty:
            return ""
        memory = next((c for c in ("train_all_gb", "train_res_gb") if c in f.columns), None)
        f = f.sort_values(["train_task", "balance"], ascending=[True, False], kind="stable")
        f = f.groupby("train_task", sort=False).head(max(3, MAX_ROWS // max(f["train_task"].nunique(), 1)))
        f = f.assign(
            measure=[MEASURE_SHORT.get(self._metric_of(c, t), "") for c, t in zip(f["config"], f["train_task"])]
        )
        cols = [
            Column("train_task", "Trained on", task_name, True),
            Column("config", "Configuration", self.label, True),
            Column("score", "In-domain efficacy", lambda v: number(v, 1)),
            Column("measure", "Measure", None, True),
            Column("latency_mean_s", "Latency (s)", lambda v: number(v, 3)),
        ]
        if memory:
            cols.append(Column(memory, "Train memory (GB)", lambda v: number(v, 2)))
        cols += [Column("balance", "Balance", lambda v: number(v, 2)), Column("best_set", "Best set", yes_no, True)]
        return self._capped(f, cols, "Q1")

    def _body_q2(self, a: dict) -> str:
        c = a["comparisons"]
        if c.empty:
            return ""
        rows = c.assign(
            measure=c["metric"].map(lambda m: MEASURE_SHORT.get(m, m)),
            diff_text=[interval(r.diff, r.ci_low, r.ci_high, digits_of(r.metric)) for r in c.itertuples()],
            verdict_text=[_side_word(r) for _, r in c.iterrows()],
        )
        cols = [
            Column("a", "Adapter", self.label, True),
            Column("b", "Against", self.label, True),
            Column("task", "Task", task_name, True),
            Column("measure", "Measure", None, True),
            Column("diff_text", "Adapter − other [interval]", None),
            Column("n", "n", lambda v: number(v, 0)),
            Column("verdict_text", "Adapter is", None, True),
        ]
        return self._capped(rows, cols, "Q2", "comparisons")

    def _body_q3(self, a: dict) -> str:
        c = a["comparisons"]
        if c.empty:
            return ""
        pairs = self._pairs(c)
        memory = a["figures"]
        if len(memory) and "measure" in memory:
            serving = memory[memory["measure"] == "serving memory"].set_index(["lower", "higher"])
            pairs["memory"] = [
                f"{number(serving.loc[(b, a_), 'low_gb'], 2)} → {number(serving.loc[(b, a_), 'high_gb'], 2)}"
                if (b, a_) in serving.index
                else DASH
                for a_, b in zip(pairs["a"], pairs["b"])
            ]
        cols = [
            Column("b", "Lower rank", self.label, True),
            Column("a", "Higher rank", self.label, True),
            Column("measure", "Measure", None, True),
            Column("eff", "Efficacy: higher − lower", None),
            Column("lat", "Latency (s): higher − lower", None),
            Column("memory", "Serving memory (GB)", None),
            Column("n", "n", lambda v: number(v, 0)),
        ]
        return self._capped(pairs, cols, "Q3", "rank pairs")

    def _body_q4(self, a: dict) -> str:
        return self.transfer_figure_html()

    def _body_q5(self, a: dict) -> str:
        f = a["figures"]
        if f.empty:
            return ""
        latency = [c for c in f.columns if c.endswith("_latency_s")]
        f = f.assign(_mean=f[latency].mean(axis=1)).sort_values(["cheapest", "_mean"], ascending=[False, True])
        cols = [Column("config", "Configuration", self.label, True)]
        cols += [
            Column(c, f"{task_name(c[: -len('_latency_s')])} latency (s)", lambda v: number(v, 3)) for c in latency
        ]
        cols += [
            Column("serving_gb", "Serving memory (GB)", lambda v: number(v, 2)),
            Column("cheapest", "Cheapest", yes_no, True),
        ]
        return self._capped(f, cols, "Q5", "configurations (fastest first)")

    def _body_q6(self, a: dict) -> str:
        f = a["figures"]
        if f.empty:
            return ""
        cols = [
            Column("train_task", "Trained on", task_name, True),
            Column("cap_gb", "Memory cap (GB)", lambda v: number(v, 2)),
            Column("n_fit", "Configurations under it", lambda v: number(v, 0)),
            Column("top", "Most effective", self.label, True),
            Column("methods", "Methods not beaten by it", None, True),
        ]
        return self._capped(f, cols, "Q6")

    def _body_q7(self, a: dict) -> str:
        c = a["comparisons"]
        if c.empty:
            return ""
        pairs = self._pairs(c)
        cols = [
            Column("a", "Adapter (trained and evaluated on)", self.label, True),
            Column("b", "Untuned", self.label, True),
            Column("measure", "Measure", None, True),
            Column("eff", "Efficacy: adapter − untuned", None),
            Column("lat", "Latency (s): adapter − untuned", None),
            Column("n", "n", lambda v: number(v, 0)),
        ]
        return self._capped(pairs, cols, "Q7", "adapters")

    def _body_q8(self, a: dict) -> str:
        c = a["comparisons"]
        if c.empty:
            return ""
        pairs = self._pairs(c)
        memory = a["figures"]
        if len(memory) and "adapter" in memory:
            m = memory.set_index(["full", "adapter"])
            pairs["memory"] = [
                f"{number(m.loc[(x, y), 'full_gb'], 2)} / {number(m.loc[(x, y), 'adapter_gb'], 2)}"
                if (x, y) in m.index
                else DASH
                for x, y in zip(pairs["a"], pairs["b"])
            ]
        cols = [
            Column("b", "Adapter (trained and evaluated on)", self.label, True),
            Column("measure", "Measure", None, True),
            Column("eff", "Efficacy: full FT − adapter", None),
            Column("lat", "Latency (s): full FT − adapter", None),
            Column("memory", "Serving GB: full FT / adapter", None),
            Column("n", "n", lambda v: number(v, 0)),
        ]
        return self._capped(pairs, cols, "Q8", "adapters")

    def _body_q9(self, a: dict) -> str:
        return self.pareto_figure_html()

    # --- figures -----------------------------------------------------------------------
    def pareto_figure_html(
        self,
        *,
        cost: str = "latency_mean_s",
        cost_label: str = "batch-1 latency per reply (s)",
        key: str = "pareto-latency",
    ) -> str:
        numbers = pareto_numbers(self.configs)
        fig = plot_pareto(self.configs, cost=cost, cost_label=cost_label, numbers=numbers)
        n = self._next_figure(key)
        facts = []
        frame = self.configs.dropna(subset=["score", cost])
        for task in TASK_ORDER:
            g = frame[frame["task"] == task]
            if g.empty:
                continue
            front = g[pareto_front(g, {"score": True, cost: False})]
            best = g.loc[g["score"].idxmax()]
            cheap = g.loc[g[cost].idxmin()]
            facts.append(
                f"{task_name(task)}: {len(front)} of {len(g)} on the front, most effective "
                f"{self.label(best['config'])} ({number(best['score'], digits_of(best['score_metric']))}), "
                f"cheapest {self.label(cheap['config'])} ({number(cheap[cost], 3 if 'latency' in cost else 2)})"
            )
        what = "batch-1 latency" if cost == "latency_mean_s" else "serving memory"
        caption = (
            f"Efficacy against {what}, one numbered point per configuration (seeds averaged); up and to the left "
            "is better. Ringed points, joined by the dashed line, are non-dominated on these two axes. "
            + "; ".join(facts)
            + "."
        )
        key_html = (
            '<p class="figure-key">'
            + " · ".join(f"<b>{i}</b> {html.escape(self.label(c))}" for c, i in numbers.items())
            + "</p>"
        )
        return figure_html(fig, number_=n, caption=html.escape(caption), anchor=f"figure-{key}", extra=key_html)

    def transfer_figure_html(self) -> str:
        fig = plot_transfer(self.configs, labels=self.labels)
        n = self._next_figure("transfer")
        m = transfer_matrix(self.configs)
        off = m[m["task"] != m["train_task"]]
        facts = []
        if len(off):
            worst, best = off.loc[off["change"].idxmin()], off.loc[off["change"].idxmax()]
            for word, r in (("largest off-task loss", worst), ("largest off-task gain", best)):
                d = digits_of(self._metric_of(r["config"], r["task"]))
                facts.append(
                    f"{word}: {self.label(r['config'])} on {task_name(r['task'])} "
                    f"({number(r['change'], d, signed=True)}, untuned {number(r['base_score'], d)})"
                )
        undefined = m[m["relative"].isna()]
        caption = (
            "Efficacy change of each trained configuration (rows) on each evaluation task (columns) against the "
            "untuned model of the same base. Colour: relative change, comparable across tasks (blue better, red "
            "worse); text: the change in the task's own unit; outlined: the training task (in-domain). "
            + (("; ".join(facts) + ".")[:1].upper() + ("; ".join(facts) + ".")[1:] if facts else "")
            + (
                f" Grey cells: the untuned base scores 0, so no relative change ({len(undefined)} cells)."
                if len(undefined)
                else ""
            )
        )
        return figure_html(fig, number_=n, caption=html.escape(caption), anchor="figure-transfer")

    @_shown
    def figure_html(self, name: str) -> str:
        """One of the report's further figures: 'pareto-memory', 'rank', 'latency', 'parse'."""
        evals = self.records.evals.copy()
        evals["model"] = evals["config"].map(self.label)
        if name == "pareto-memory":
            return self.pareto_figure_html(
                cost="eval_res_gb", cost_label="serving memory, batch-1 peak (GB)", key="pareto-memory"
            )
        if name == "rank":
            fig, caption = (
                plots.plot_rank(evals),
                (
                    "Efficacy against adapter rank (log scale), one line per method and training task; with several seeds "
                    "the bars are their standard deviation. Flat lines: rank does not change efficacy."
                ),
            )
        elif name == "latency":
            fig, caption = (
                plots.plot_latency_split(evals),
                (
                    "Batch-1 latency split into its two factors: generated tokens per reply (left) and seconds per token "
                    "(right). A long bar on the left means the model writes long replies; on the right, a slower model."
                ),
            )
        elif name == "parse":
            fig, caption = (
                plots.plot_parse_rates(evals),
                (
                    "Share of replies with an answer in \\boxed{}, per model and task. An unparsed reply scores as wrong."
                ),
            )
        else:
            raise ValueError(f"unknown figure {name!r}")
        n = self._next_figure(name)
        return figure_html(fig, number_=n, caption=html.escape(caption), anchor=f"figure-{name}")

    # --- appendix ----------------------------------------------------------------------
    @_shown
    def appendix_html(self) -> str:
        """Per question, every row of its table and every comparison (collapsible in the HTML)."""
        out = []
        for a in self.answers:
            qid = a["id"]
            parts = [
                f"<p><b>Answer as computed:</b> {html.escape(relabel(a['answer'], self.labels))}</p>",
                f"<p><b>How:</b> {html.escape(a['how'])}</p>",
            ]
            f = a["figures"]
            if isinstance(f, pd.DataFrame) and len(f):
                cols = [
                    Column(
                        k,
                        FIGURE_HEADERS.get(k, k.replace("_", " ")),
                        self._labels_in
                        if k in CONFIG_COLUMNS or k == "best_set" and f[k].dtype == object
                        else _figure_fmt(k),
                        _is_text(f[k]) or k in CONFIG_COLUMNS,
                    )
                    for k in f.columns
                    if k not in ("method_key",)
                ]
                parts.append(table_html(f, cols, classes="full"))
            c = a["comparisons"]
            if isinstance(c, pd.DataFrame) and len(c):
                parts.append(
                    f"<p><i>{len(c)} comparisons, Holm family of {int(c['family_size'].iloc[0])} tested. "
                    "A − B in the measure's unit; interval at the level Holm tests it at; MDE: smallest "
                    "difference detectable with 80 % power.</i></p>"
                )
                view = c.assign(
                    measure=c["metric"].map(lambda m: MEASURE_SHORT.get(m, m) if isinstance(m, str) else m),
                    diff_text=[interval(r.diff, r.ci_low, r.ci_high, digits_of(r.metric)) for r in c.itertuples()],
                    mde_text=[number(r.mde, digits_of(r.metric)) for r in c.itertuples()],
                    p_text=[_p_value(v) for v in c["p_adjusted"]],
                    verdict_text=[_verdict_word(r) for _, r in c.iterrows()],
                )
                cols = [
                    Column("a", "A", self.label, True),
                    Column("b", "B", self.label, True),
                    Column("task", "Task", task_name, True),
                    Column("measure", "Measure", None, True),
                    Column("n", "n", lambda v: number(v, 0)),
                    Column("diff_text", "A − B [adj. interval]", None),
                    Column("p_text", "p (Holm)", None),
                    Column("mde_text", "MDE", None),
                    Column("verdict_text", "Verdict", None, True),
                    Column("note", "Note", _note, True),
                ]
                parts.append(table_html(view, cols, classes="full"))
            out.append(
                f'<details class="appendix-question"><summary><h3 id="appendix-{qid.lower()}">{qid}. '
                f"{html.escape(a['question'])}</h3></summary>{''.join(parts)}</details>"
            )
        return "".join(out)

    @_shown
    def how_html(self, *, alpha: float, min_n: int, n_boot: int) -> str:
        common = how_table(alpha=alpha, min_n=min_n, n_boot=n_boot).iloc[0]
        items = "".join(
            f"<li><b>{html.escape(k.capitalize())}:</b> {html.escape(str(common[k]))}</li>"
            for k in ("measure", "resampling unit", "interval", "correction", "minimum n")
        )
        rows = pd.DataFrame([{"id": qid, "question": q, "how": HOW[qid]} for qid, q, _ in QUESTIONS])
        return f"<ul>{items}</ul>" + table_html(
            rows,
            [
                Column("id", "", None, True),
                Column("question", "Question", None, True),
                Column("how", "Comparisons", None, True),
            ],
            classes="full",
        )

    @_shown
    def failures_html(self) -> str:
        frames = []
        for frame, kind in ((self.records.trains, "training"), (self.records.evals, "evaluation")):
            if len(frame):
                bad = frame[frame["status"] != "ok"]
                frames.append(bad.assign(kind=kind))
        failed = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if failed.empty:
            return "<p>Every training run and evaluation finished.</p>"
        failed["error_text"] = failed["error"].map(_error_text) if "error" in failed else DASH
        return table_html(
            failed,
            [
                Column("kind", "Record", None, True),
                Column("config", "Configuration", self.label, True),
                Column("task", "Task", task_name, True),
                Column("error_text", "Error", None, True),
            ],
            classes="full",
        )

    @_shown
    def comparison_html(self, compared: pd.DataFrame | None, note: str = "") -> str:
        """This study's answers against another study's (``questions.compare_protocols``)."""
        if compared is None or compared.empty:
            return f"<p>{html.escape(note or 'No other study to compare with.')}</p>"
        status = [c for c in compared.columns if c.startswith("status_")]
        agrees = [c for c in compared.columns if c.startswith("agrees_")]
        names = [c[len("status_") :] for c in status]
        cols = [Column("id", "", None, True), Column("question", "Question", None, True)]
        for name, s, g in zip(names, status, agrees):
            cols += [
                Column(s, f"Verdict, {name}", None, True),
                Column(
                    g,
                    f"Agrees with reference, {name}",
                    lambda v: AGREEMENT_TEXT.get(None if missing(v) else bool(v), DASH),
                    True,
                ),
            ]
        cols.append(Column("agreement_changed", "Agreement changed", yes_no, True))
        return table_html(compared, cols)

    @_shown
    def provenance_html(self, *, study_dir: str) -> str:
        frame = provenance(study_dir=study_dir)
        rows = []
        for _, r in frame.iterrows():
            versions = _json_or_empty(r["versions"])
            rows.append(
                {
                    "what": r["what"],
                    "commit": (r["commit"] or "")[:10] if isinstance(r["commit"], str) else None,
                    "dirty": r["dirty"],
                    "device": r["device"],
                    **{k: versions.get(k) for k in ("python", "torch", "transformers", "peft", "trl")},
                }
            )
        view = pd.DataFrame(rows)
        return table_html(
            view,
            [
                Column("what", "Record (first with these versions)", None, True),
                Column("commit", "Git commit", None, True),
                Column("dirty", "Uncommitted changes", yes_no, True),
                Column("device", "Device", None, True),
            ]
            + [
                Column(k, k.capitalize() if k != "trl" else "TRL", None, True)
                for k in ("python", "torch", "transformers", "peft", "trl")
            ],
            classes="full",
        )


def _is_text(values: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)


def _figure_fmt(key: str) -> Callable[[Any], str]:
    digits = FIGURE_DIGITS.get(key, 2)
    if key == "changed_share":
        return lambda v: number(100 * v, 0) if not missing(v) else DASH
    if key in ("rank", "comparisons", "gains", "losses", "insufficient", "ties", "n_fit"):
        return lambda v: number(v, 0)
    if key in ("train_task", "task"):
        return task_name
    return lambda v: cell(v) if not isinstance(v, float) else number(v, digits)


def _verdict_word(c) -> str:
    """The verdict of 'A vs B' as the appendix reads it."""
    return {"a better": "A better", "b better": "B better"}.get(c["verdict"], str(c["verdict"]))


def _side_word(c) -> str:
    """The verdict from A's side: better, worse, tie, or insufficient data."""
    return {"a better": "better", "b better": "worse", "insufficient data": "too few items"}.get(
        c["verdict"], str(c["verdict"])
    )


def _p_value(value: Any) -> str:
    if missing(value):
        return DASH
    return "< 0.001" if value < 0.001 else number(value, 3)


def _note(value: Any) -> str:
    return "" if missing(value) else str(value)


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', '')}: {error.get('message', '')}".strip(": ")
    return DASH if missing(error) else str(error)


def _json_or_empty(text: Any) -> dict:
    import json

    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


__all__ = [
    "Column",
    "ReportView",
    "caveats",
    "comparison_sentence",
    "compared_sentences",
    "figure_html",
    "headline",
    "key_comparisons",
    "number",
    "relabel",
    "short_labels",
    "study_facts",
    "table_html",
]
