"""The report's view of one study: the findings page, one short section per question, the
figures, and the appendix with every row and comparison, each as HTML a notebook cell shows.

Nothing here decides an answer: every sentence and table is formatted from the records
(``study_records``), the configurations (``comparisons.configurations``) and the answers
(``analysis.questions.answer_questions``). The pieces live beside it: ``cells`` (numbers,
tables, labels), ``prose`` (sentences, facts, caveats), ``figures`` (figures and their captions)
and ``sections`` (each question's body, reached through its entry's section kind).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

import pandas as pd

from peftlab.analysis.comparisons import configurations
from peftlab.analysis.questions import REGISTRY, how_table
from peftlab.analysis.study_records import StudyRecords, provenance
from peftlab.report.cells import (
    DASH,
    MEASURE_SHORT,
    Column,
    cell,
    digits_of,
    interval,
    missing,
    number,
    relabel,
    short_labels,
    shown,
    table_html,
    task_name,
    verdict_word,
    yes_no,
)
from peftlab.report.figures import further_figure_html, pareto_figure_html, transfer_figure_html
from peftlab.report.prose import (
    AGREEMENT_SENTENCE,
    AGREEMENT_TEXT,
    STATUS_CLASS,
    caveats,
    compared_sentences,
    comparison_sentence,
    headline,
    key_comparisons,
    study_facts,
    verdict_counts,
)
from peftlab.report.sections import question_body
from peftlab.tasks.registry import TASKS

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

    def metric_of(self, config: str, task: str) -> str | None:
        """The efficacy measure of ``config`` on ``task`` (None when it was not evaluated there)."""
        hit = self.configs[(self.configs["config"] == config) & (self.configs["task"] == task)]
        return hit["score_metric"].iloc[0] if len(hit) else None

    def _next_figure(self, key: str) -> int:
        if key not in self._figure_of:
            self._figures += 1
            self._figure_of[key] = self._figures
        return self._figure_of[key]

    # --- page 1 ----------------------------------------------------------------------
    @shown
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

    @shown
    def contents_html(self) -> str:
        """The table of contents; the rendered report fills it from the headings."""
        return '<nav class="toc" id="toc"></nav>'

    @shown
    def questions_html(self) -> str:
        """The nine questions, one short section each."""
        return "".join(self.question_html(a["id"]) for a in self.answers)

    # --- one question ----------------------------------------------------------------
    @shown
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
        body = question_body(self, a)
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

    # --- figures -----------------------------------------------------------------------
    def pareto_figure_html(
        self,
        *,
        cost: str = "latency_mean_s",
        cost_label: str = "batch-1 latency per reply (s)",
        key: str = "pareto-latency",
    ) -> str:
        return pareto_figure_html(
            self.configs, label=self.label, next_number=self._next_figure, cost=cost, cost_label=cost_label, key=key
        )

    def transfer_figure_html(self) -> str:
        return transfer_figure_html(
            self.configs,
            labels=self.labels,
            label=self.label,
            metric_of=self.metric_of,
            next_number=self._next_figure,
        )

    @shown
    def figure_html(self, name: str) -> str:
        """One of the report's further figures: 'pareto-memory', 'rank', 'latency', 'parse'."""
        evals = self.records.evals.copy()
        evals["model"] = evals["config"].map(self.label)
        if name == "pareto-memory":
            return self.pareto_figure_html(
                cost="eval_res_gb", cost_label="serving memory, batch-1 peak (GB)", key="pareto-memory"
            )
        return further_figure_html(name, evals, next_number=self._next_figure)

    # --- appendix ----------------------------------------------------------------------
    @shown
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
                    verdict_text=[verdict_word(r) for _, r in c.iterrows()],
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

    @shown
    def how_html(self, *, alpha: float, min_n: int, n_boot: int) -> str:
        common = how_table(alpha=alpha, min_n=min_n, n_boot=n_boot).iloc[0]
        items = "".join(
            f"<li><b>{html.escape(k.capitalize())}:</b> {html.escape(str(common[k]))}</li>"
            for k in ("measure", "resampling unit", "interval", "correction", "minimum n")
        )
        rows = pd.DataFrame([{"id": q.id, "question": q.text, "how": q.how} for q in REGISTRY])
        return f"<ul>{items}</ul>" + table_html(
            rows,
            [
                Column("id", "", None, True),
                Column("question", "Question", None, True),
                Column("how", "Comparisons", None, True),
            ],
            classes="full",
        )

    @shown
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

    @shown
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

    @shown
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
                    "engine": r["engine"],
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
                Column("engine", "Evaluation engine", None, True),
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
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
