"""The answers as files and tables: ``questions.json``, the answers table, how each answer is
computed, and two studies' answers side by side."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peftlab.analysis.comparisons import ALPHA, MIN_N, N_BOOT
from peftlab.analysis.questions.common import EFFICACY_NOTE
from peftlab.analysis.questions.registry import REGISTRY
from peftlab.core.files import write_json


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
                "rests_on": a.get("rests_on", {}),
                "notes": a.get("notes", []),
                "comparisons": comparisons,
            }
        )
    return out


def write_questions(answers: list[dict], path: str | Path) -> Path:
    """Write ``questions.json`` (a list of one object per question) atomically."""
    return write_json(Path(path), questions_json(answers))


def answers_table(answers: list[dict]) -> pd.DataFrame:
    """The answers in one table: id, question, answer, status, agreement with the study."""
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
    return pd.DataFrame([{"id": q.id, "question": q.text, "comparisons": q.how, **common} for q in REGISTRY])


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


def question_docs() -> dict[str, str]:
    """Each question's definition, as the report states it."""
    return {q.id: q.how for q in REGISTRY}
