"""The reference study's questions, answered from a study's records.

One question is one entry: ``entry.Question`` holds its id, text, the reference study's answer,
how it is computed, its answer function and the kind of body its report section shows. Each
entry lives in its own module, ``q1_balance.py`` ... ``q9_pareto.py``; ``registry`` finds them
and orders them by number, so a new question is one new ``q<number>_<topic>.py`` file.
``common`` holds the helpers the answer functions share, ``tables`` the answers as
``questions.json`` and as tables.

Every answer rests on the comparisons of ``peftlab.analysis.comparisons`` (paired, cluster
bootstrap, Holm within the question's family, a minimum n, timing noise for latency) and has a
status:

* ``decisive``: the comparisons that decide it are decisive after adjustment;
* ``tie``: the data are enough to compare but show no difference (the answer states the
  smallest difference it could have detected);
* ``insufficient data``: too few items, or no per-item data, for the comparisons it needs;
* ``not answerable``: the study lacks what the question needs (a configuration failed, a
  larger base or a second rank was not run, training memory was not measured).

``agrees_with_reference`` says whether the answer says what the reference study said
(None when the answer is undecided). ``HOW`` says, per question, how it is computed.

The report (a layer above) shows each answer's section by the entry's ``section`` kind, through
the one mapping ``peftlab.report.sections.SECTIONS``.
"""

from __future__ import annotations

from peftlab.analysis.questions.common import EFFICACY_NOTE, amount, describe
from peftlab.analysis.questions.entry import SECTION_KINDS, STATUSES, Finding, Question
from peftlab.analysis.questions.registry import BY_ID, HOW, QUESTIONS, REGISTRY, answer_questions, question
from peftlab.analysis.questions.tables import (
    answers_table,
    compare_protocols,
    how_table,
    question_docs,
    questions_json,
    write_questions,
)

__all__ = [
    "BY_ID",
    "EFFICACY_NOTE",
    "HOW",
    "QUESTIONS",
    "REGISTRY",
    "SECTION_KINDS",
    "STATUSES",
    "Finding",
    "Question",
    "amount",
    "answer_questions",
    "answers_table",
    "compare_protocols",
    "describe",
    "how_table",
    "question",
    "question_docs",
    "questions_json",
    "write_questions",
]
