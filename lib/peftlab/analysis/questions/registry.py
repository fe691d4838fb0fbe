"""The ordered registry of questions, and answering them all.

Each question is one module of this package named ``q<number>_<topic>.py`` that defines
``QUESTION``, a ``Question`` entry. The registry finds them by that name when it is imported:
a new question is one new file, with no list to keep by hand. The entries are ordered by their
number (Q1, Q2, ..., Q10), and the registry refuses two entries with one id, or a module whose
number is not its entry's. Only this package's own modules are loaded that way, so the layers
stay as ``tests/test_layers.py`` checks them: each question module's imports are its own.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from peftlab.analysis.comparisons import ALPHA, MIN_N, N_BOOT, Analysis
from peftlab.analysis.questions.common import failed_note
from peftlab.analysis.questions.entry import Question
from peftlab.analysis.study_records import StudyRecords

MODULE_NAME = re.compile(r"q(\d+)_\w+")


def discover(package: str = __package__, folder: Path = Path(__file__).parent) -> tuple[Question, ...]:
    """The ``QUESTION`` of every ``q<number>_*.py`` module in ``folder``, ordered by number."""
    found = []
    for module in pkgutil.iter_modules([str(folder)]):
        match = MODULE_NAME.fullmatch(module.name)
        if not match:
            continue
        entry = getattr(importlib.import_module(f"{package}.{module.name}"), "QUESTION", None)
        if not isinstance(entry, Question):
            raise TypeError(f"{package}.{module.name} defines no QUESTION entry")
        if entry.number != int(match.group(1)):
            raise ValueError(f"{package}.{module.name} holds {entry.id}: the file's number must be its id's")
        found.append(entry)
    found.sort(key=lambda q: q.number)
    ids = [q.id for q in found]
    if len(set(ids)) != len(ids):
        raise ValueError(f"question ids used twice: {sorted({i for i in ids if ids.count(i) > 1})}")
    return tuple(found)


REGISTRY: tuple[Question, ...] = discover()
BY_ID: dict[str, Question] = {q.id: q for q in REGISTRY}

# The questions as (id, text, reference answer), and how each is computed, by id.
QUESTIONS = tuple((q.id, q.text, q.reference) for q in REGISTRY)
HOW = {q.id: q.how for q in REGISTRY}


def question(qid: str) -> Question | None:
    """The entry of question ``qid`` ('Q3'), or None."""
    return BY_ID.get(qid)


def answer_questions(
    records: StudyRecords, *, alpha: float = ALPHA, min_n: int = MIN_N, n_boot: int = N_BOOT, seed: int = 0
) -> list[dict]:
    """The answers, in the registry's order: ``id``, ``question``, ``answer``, ``status``,
    ``agrees_with_reference``, ``reference_answer``, ``comparisons`` (every comparison behind it,
    adjusted within the question), ``figures`` (the question's compact table) and ``how``."""
    an = Analysis(records, alpha=alpha, min_n=min_n, n_boot=n_boot, seed=seed)
    answers = [q.ask(an) for q in REGISTRY]
    for answer in answers:  # a failed configuration is never silently left out
        answer["answer"] += failed_note(an.failed)
    return answers
