"""Each question is one entry with all its parts (id, text, the reference study's answer, how it is
computed, its answer function, its report section), found by the registry in Q1..Q9 order, and the
report renders a body for every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from handmade import mask, write_model, write_squad_dora_r8, write_squad_study_core
from peftlab.analysis import questions
from peftlab.analysis.questions import HOW, QUESTIONS, REGISTRY, SECTION_KINDS, Question, answer_questions
from peftlab.analysis.questions.registry import discover
from peftlab.analysis.study_records import load_study
from peftlab.report.sections import SECTIONS, question_body
from peftlab.report.view import ReportView

PACKAGE = Path(questions.__file__).parent


def test_every_question_has_all_its_parts():
    assert [q.id for q in REGISTRY] == [f"Q{i}" for i in range(1, len(REGISTRY) + 1)]
    assert len(REGISTRY) == 9
    for q in REGISTRY:
        assert isinstance(q, Question)
        assert q.text.strip().endswith("?"), q.id
        assert q.reference.strip() and q.how.strip(), q.id
        assert callable(q.answer), q.id
        assert q.section in SECTION_KINDS and callable(SECTIONS[q.section]), q.id
    assert QUESTIONS == tuple((q.id, q.text, q.reference) for q in REGISTRY)
    assert HOW == {q.id: q.how for q in REGISTRY}


def test_every_section_kind_has_one_renderer():
    assert set(SECTIONS) == set(SECTION_KINDS)


def test_a_question_is_one_file():
    files = sorted(p.stem for p in PACKAGE.glob("q*_*.py"))
    modules = sorted(q.answer.__module__.rsplit(".", 1)[1] for q in REGISTRY)
    assert files == modules
    assert all(re.fullmatch(rf"q{q.number}_\w+", q.answer.__module__.rsplit(".", 1)[1]) for q in REGISTRY)


ENTRY = """
from peftlab.analysis.questions.entry import Finding, Question

QUESTION = Question(
    id="{qid}", text="Is it?", reference="yes", how="By hand.", answer=lambda an: Finding("Yes.", "tie", True),
    section="comparisons",
)
"""


@pytest.mark.parametrize(
    "files, found",
    [
        ({"q2_later": "Q2", "q10_last": "Q10", "q1_first": "Q1", "common": None}, ["Q1", "Q2", "Q10"]),
        ({"q1_one": "Q1", "q1_again": "Q1"}, "used twice"),
        ({"q3_wrong": "Q4"}, "number must be"),
    ],
)
def test_the_registry_finds_orders_and_checks_entries(tmp_path, monkeypatch, files, found):
    package_name = "extra_questions_" + re.sub(r"\W", "_", tmp_path.name)  # one package per case
    package = tmp_path / package_name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, qid in files.items():
        (package / f"{name}.py").write_text(ENTRY.format(qid=qid) if qid else "")
    monkeypatch.syspath_prepend(str(tmp_path))
    if isinstance(found, list):
        assert [q.id for q in discover(package_name, package)] == found
    else:
        with pytest.raises(ValueError, match=found):
            discover(package_name, package)


def test_an_entry_refuses_a_missing_part():
    parts = dict(id="Q1", text="Is it?", reference="yes", how="By hand.", answer=len, section="comparisons")
    for change in ({"id": "1"}, {"text": " "}, {"reference": ""}, {"how": ""}, {"answer": None}, {"section": "x"}):
        with pytest.raises(ValueError):
            Question(**{**parts, **change})


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    """Every question answerable: two bases, full FT and LoRA at two ranks and DoRA on SQuAD v2."""
    out = tmp_path_factory.mktemp("entries") / "study"
    write_squad_study_core(out)
    write_model(
        out, "squad_v2-lora-r16-s0", method="lora", rank=16, train_task="squad_v2", seed=0, correct=mask(9), latency=0.2
    )
    write_squad_dora_r8(out)
    records = load_study(out)
    return ReportView(records=records, answers=answer_questions(records, n_boot=200), study="entries")


def test_the_report_renders_a_body_for_every_question(view):
    assert [a["id"] for a in view.answers] == [q.id for q in REGISTRY]
    for q, a in zip(REGISTRY, view.answers):
        body = question_body(view, a)
        assert "<table" in body or "<figure" in body, (q.id, q.section, a["status"])
        assert "No compact table" not in body, (q.id, body)
        assert body in str(view.question_html(q.id)) or "<figure" in body


def test_the_comparisons_section_fits_any_question(view):
    for a in view.answers:
        body = SECTIONS["comparisons"](view, a)
        assert ("<table" in body) == (len(a["comparisons"]) > 0), a["id"]
