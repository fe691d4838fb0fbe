"""The study's analysis in one import: records, Table 1, comparisons and the nine questions.

Each part lives in its own module: ``study_records`` (reading a study's records into tables),
``table1`` (Table 1 in the reference layout), ``comparisons`` (measures, paired cluster-
bootstrap comparisons, Holm within a question, timing noise) and ``questions`` (the nine
answers and ``questions.json``). Everything is computed from the files a study writes
(``outputs/<study>/runs/<model>/``), never typed in.
"""

from __future__ import annotations

from .comparisons import ALPHA, MEASURES, MIN_N, N_BOOT, Analysis
from .questions import (
    HOW,
    QUESTIONS,
    answer_questions,
    answers_table,
    compare_protocols,
    how_table,
    questions_json,
    write_questions,
)
from .study_records import TABLE1_COLUMNS, StudyRecords, load_study
from .table1 import table1, table1_best, table1_html


def question_docs() -> dict[str, str]:
    """Each question's definition, as the report states it."""
    return dict(HOW)


__all__ = [
    "ALPHA",
    "Analysis",
    "HOW",
    "MEASURES",
    "MIN_N",
    "N_BOOT",
    "QUESTIONS",
    "TABLE1_COLUMNS",
    "StudyRecords",
    "answer_questions",
    "answers_table",
    "compare_protocols",
    "how_table",
    "load_study",
    "question_docs",
    "questions_json",
    "table1",
    "table1_best",
    "table1_html",
    "write_questions",
]
