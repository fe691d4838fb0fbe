"""Shipped data loads; malformed records name the file, the row and the field."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from peftlab.tasks.data import DataError
from peftlab.tasks.registry import TASKS, load_rows


@pytest.mark.parametrize(
    "task, n_train, n_test", [("arc", 1000, 200), ("openmath", 1000, 200), ("squad_v2", 1000, 200)]
)
def test_reference_subsets_have_the_studys_sizes(task, n_train, n_test):
    assert len(load_rows(task=task, split="train")) == n_train
    assert len(load_rows(task=task, split="test")) == n_test


def test_rows_have_the_task_shape():
    arc = load_rows(task="arc", split="test", n=200)
    assert {row["answer"] for row in arc} >= {"A", "B", "C", "D", "1"}  # some rows use 1-4 labels
    squad = load_rows(task="squad_v2", split="test", source="hf", n=50)
    assert any(len(row["answers"]) > 1 for row in squad) or any(row["answers"] == [] for row in squad)
    math = load_rows(task="openmath", split="test", n=3)
    assert isinstance(math[0]["answer"], float)


def test_hf_samples_load_for_every_task():
    for task in TASKS:
        assert load_rows(task=task, split="train", source="hf", n=5)


def _write_parquet(path, rows):
    pd.DataFrame(rows).to_parquet(path)


def test_malformed_records_name_file_row_and_field(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "data" / "reference-study").mkdir(parents=True)
    (root / "params").mkdir()
    monkeypatch.setenv("PEFTLAB_ROOT", str(root))
    arc = root / "data" / "reference-study" / "test-ai2_arc.parquet"
    _write_parquet(
        arc,
        [
            {"title": "q0", "question": "Q? A. x B. y C. z D. w", "answer": "B"},
            {"title": "q1", "question": "Q? A. x B. y C. z D. w", "answer": "E"},
        ],
    )
    with pytest.raises(DataError, match=r"test-ai2_arc.parquet row 1 field 'answer'.*'E' is not among"):
        load_rows(task="arc", split="test")
    squad = root / "data" / "reference-study" / "test-squad_v2.parquet"
    _write_parquet(squad, [{"title": "t", "context": "Paris is in France.", "question": "Where?", "answer": "Berlin"}])
    with pytest.raises(DataError, match=r"row 0 field 'answer'.*not found in the context"):
        load_rows(task="squad_v2", split="test")
    math = root / "data" / "reference-study" / "test-OpenMathInstruct-2.parquet"
    _write_parquet(math, [{"question": "1+1?", "answer": 2.0}, {"question": "", "answer": 1.0}])
    with pytest.raises(DataError, match=r"row 1 field 'question'"):
        load_rows(task="openmath", split="test")
    _write_parquet(math, [{"problem": "1+1?", "answer": 2.0}])
    with pytest.raises(DataError, match=r"row 0 field 'question': missing"):
        load_rows(task="openmath", split="test")
    _write_parquet(math, pd.DataFrame({"question": pd.Series([], dtype=str), "answer": pd.Series([], dtype=float)}))
    with pytest.raises(DataError, match="empty"):
        load_rows(task="openmath", split="test")
    arc.unlink()
    with pytest.raises(DataError, match="test-ai2_arc.parquet does not exist"):
        load_rows(task="arc", split="test")


def test_arc_rows_with_a_fifth_option_load(tmp_path, monkeypatch):
    # The shipped HF sample has a five-option question whose gold is E.
    rows = load_rows(task="arc", split="test", source="hf")
    five = [r for r in rows if r["answer"] == "E"]
    assert five and five[0]["labels"] == ["A", "B", "C", "D", "E"] and " E. " in five[0]["question"]
    # The reference layout: a fifth option listed in the question text, lettered or numbered.
    root = tmp_path / "repo"
    (root / "data" / "reference-study").mkdir(parents=True)
    (root / "params").mkdir()
    monkeypatch.setenv("PEFTLAB_ROOT", str(root))
    _write_parquet(
        root / "data" / "reference-study" / "test-ai2_arc.parquet",
        [
            {"title": "q0", "question": "Q? A. x B. y C. z D. w E. v", "answer": "E"},
            {"title": "q1", "question": "Q? 1. x 2. y 3. z 4. w 5. v", "answer": "5"},
            {"title": "q2", "question": "Q? A. x B. y C. z D. w", "answer": "D"},
        ],
    )
    rows = load_rows(task="arc", split="test")
    assert [r["answer"] for r in rows] == ["E", "5", "D"]
    assert [r["labels"] for r in rows] == [["A", "B", "C", "D", "E"], ["1", "2", "3", "4", "5"], ["A", "B", "C", "D"]]


def test_local_dataset_directory_goes_through_the_hub_loader(tmp_path):
    """A local folder laid out like a Hub dataset is read by datasets.load_dataset, as a Hub id is."""
    folder = tmp_path / "mydata" / "squad_v2"
    folder.mkdir(parents=True)
    records = [
        {
            "id": "x1",
            "title": "t",
            "context": "The Eiffel Tower is in Paris.",
            "question": "Where?",
            "answers": {"text": ["Paris", "Paris"], "answer_start": [23, 23]},
        },
        {
            "id": "x2",
            "title": "t",
            "context": "No answer here.",
            "question": "Who?",
            "answers": {"text": [], "answer_start": []},
        },
    ]
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    rows = load_rows(task="squad_v2", split="test", source=str(tmp_path / "mydata"))
    assert [r["answers"] for r in rows] == [["Paris"], []]
    records[1]["answers"] = {"text": ["London"], "answer_start": [0]}
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    with pytest.raises(DataError, match=r"row 1 field 'answers'.*'London'"):
        load_rows(task="squad_v2", split="test", source=str(tmp_path / "mydata"))


def test_unknown_source_is_explained():
    with pytest.raises(DataError, match="neither reference, hf, hub nor an existing directory"):
        load_rows(task="arc", split="test", source="/no/such/dir")
