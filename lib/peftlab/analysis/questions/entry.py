"""What a question is: one ``Question`` entry holds everything the study says about it.

An entry has the question's id (``Q1``, ``Q2``, ...), its text, the reference study's answer,
how it is computed (the text the report's methods section prints), the function that answers it
from a study's ``Analysis``, and the kind of body its report section shows.

The answer function returns a ``Finding`` (the answer's sentence, status, agreement with the
reference study, the comparisons behind it and its compact table); ``Question.ask`` adds the
entry's own parts and gives the answer as the rest of the package reads it (a dict, see
``peftlab.analysis.questions.answer_questions``).

The report section: analysis sits below report, so an entry cannot name a report function.
It names a section kind instead, one of ``SECTION_KINDS``: a small vocabulary of bodies (a
table of the question's figures, a table of its comparisons, a figure). The report layer keeps
the one mapping from each kind to the function that renders it
(``peftlab.report.sections.SECTIONS``), and a test checks that every kind has one. A new
question either reuses a kind (``comparisons`` fits any question) or adds one here and its
renderer there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from peftlab.analysis.comparisons import COMPARISON_COLUMNS, CUT_LIMIT, MEASURES, Analysis
from peftlab.tasks.registry import TASKS

STATUSES = ("decisive", "tie", "insufficient data", "not answerable")

# The bodies a question's report section can show, each rendered by the report layer.
SECTION_KINDS = {
    "balance-table": "in-domain efficacy, latency, training memory and balance per configuration (Q1)",
    "adapter-comparisons": "each comparison of the best adapter with the configuration it is set against (Q2)",
    "rank-pairs": "per pair of neighbouring ranks: efficacy, latency and serving memory (Q3)",
    "transfer-figure": "the transfer figure: every trained configuration on every task against its base (Q4)",
    "latency-table": "per configuration: latency on each task, serving memory, cheapest or not (Q5)",
    "memory-caps": "per training task and memory cap: the most effective configuration and its best set (Q6)",
    "adapter-vs-untuned": "per adapter: efficacy and latency against the untuned base (Q7)",
    "full-vs-adapters": "per adapter: efficacy, latency and serving memory of full FT against it (Q8)",
    "pareto-figure": "the Pareto figure: efficacy against latency, the front ringed (Q9)",
    "comparisons": "every comparison behind the answer: A, B, task, measure, difference, verdict",
}


@dataclass(frozen=True)
class Finding:
    """What an answer function found: the answer's sentence, its status (one of ``STATUSES``),
    whether it says what the reference study said (None: undecided), the comparisons behind it
    (adjusted within the question) and the question's compact table."""

    answer: str
    status: str
    agrees: bool | None
    comparisons: pd.DataFrame | None = None
    figures: pd.DataFrame | None = None


@dataclass(frozen=True)
class Question:
    """One of the study's questions, with everything that belongs to it.

    ``answer`` computes the ``Finding`` from a study's ``Analysis``; ``section`` is the kind of
    body the report shows for it (a key of ``SECTION_KINDS``)."""

    id: str
    text: str
    reference: str
    how: str
    answer: Callable[[Analysis], Finding]
    section: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"Q[1-9]\d*", self.id):
            raise ValueError(f"question id {self.id!r} is not Q<number>")
        for part in ("text", "reference", "how"):
            if not getattr(self, part).strip():
                raise ValueError(f"{self.id} has no {part}")
        if not callable(self.answer):
            raise ValueError(f"{self.id}: answer is not a function")
        if self.section not in SECTION_KINDS:
            raise ValueError(f"{self.id}: unknown section kind {self.section!r} (one of {', '.join(SECTION_KINDS)})")

    @property
    def number(self) -> int:
        """Q7 → 7: the questions' order."""
        return int(self.id[1:])

    def ask(self, an: Analysis) -> dict:
        """The answer: ``id``, ``question``, ``answer``, ``status``, ``agrees_with_reference``,
        ``reference_answer``, ``comparisons``, ``figures`` and ``how``."""
        found = self.answer(an)
        assert found.status in STATUSES
        comparisons = found.comparisons if found.comparisons is not None else empty_comparisons()
        return {
            "id": self.id,
            "question": self.text,
            "answer": found.answer,
            "status": found.status,
            "agrees_with_reference": None if found.agrees is None else bool(found.agrees),
            "reference_answer": self.reference,
            "comparisons": comparisons,
            "figures": (found.figures if found.figures is not None else pd.DataFrame()).reset_index(drop=True),
            "how": self.how,
            "rests_on": rests_on(comparisons),
            "notes": scale_notes(an, comparisons),
        }


def rests_on(comparisons: pd.DataFrame) -> dict[str, list[str]]:
    """What the decisive comparisons measured, by role: skill (efficacy without the answer
    format where the items have it), format (replies in the answer format), cost (latency, tokens)."""
    out: dict[str, list[str]] = {}
    for metric in comparisons.loc[comparisons["decisive"].astype(bool), "metric"].dropna().unique():
        measure = MEASURES.get(metric)
        role = {"efficacy": "skill"}.get(measure.role, measure.role) if measure else "other"
        out.setdefault(role, []).append(measure.label if measure else str(metric))
    return out


def scale_notes(an: Analysis, comparisons: pd.DataFrame) -> list[str]:
    """What the study cannot tell on the tasks this answer compares: a task where every
    configuration is at chance (or the floor), and models whose replies were cut at the cap."""
    notes = []
    for task in dict.fromkeys(comparisons["task"].dropna()):
        if not an.informative(task):
            notes.append(
                f"{TASKS[task].label}: not informative at this scale (every configuration, the untuned base "
                "included, is at chance or the floor); not ranked"
            )
        cut = [r.config for r in an.rows(task).itertuples() if an.cut(r.config, task)]
        if cut:
            notes.append(
                f"{TASKS[task].label}: cut at the cap (over {CUT_LIMIT:.0%} of replies at max_new_tokens): "
                + ", ".join(cut)
                + "; their latency and token comparisons are never decisive"
            )
    return notes


def empty_comparisons() -> pd.DataFrame:
    return pd.DataFrame(columns=COMPARISON_COLUMNS)
