"""Task data: the shipped files and Hub datasets, validated into one row shape per task.

Every loader returns plain dicts with the keys the task formatting needs:
- arc:      id, question (stem with the options appended "A. ... B. ..."), labels, answer
- openmath: id, question, answer (float, or a string such as "\\frac{3}{4}")
- squad_v2: id, question, context, answers (list of gold spans; [] = unanswerable)

Sources (`data_source`): `reference` (the reference study's exact subsets), `hf` (the
shipped Hugging Face-schema samples), `hub` (the official Hub datasets), or a local
directory laid out like a Hub dataset (`<dir>/<task>/{train,test}.jsonl`).
A malformed record raises DataError naming the file, the row and the field.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import PeftlabError

SPLITS = ("train", "test")

ARC_LABELS = ("A", "B", "C", "D", "E")
ARC_NUMERIC_LABELS = ("1", "2", "3", "4", "5")


class DataError(PeftlabError, ValueError):
    """A data file is missing, or a record in it is malformed."""


def data_dir() -> Path:
    from .config import repo_root  # config reads the task registry, which reads this module

    return repo_root() / "data"


def _files(task: str):
    """The task's data files (its registry entry)."""
    from .tasks import TASKS

    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    return TASKS[task].data


def _bad(where: str, row: int, field: str, problem: str) -> DataError:
    return DataError(f"{where} row {row} field '{field}': {problem}")


def _text(record: dict, field: str, where: str, row: int, *, allow_empty: bool = False) -> str:
    if field not in record:
        raise _bad(where, row, field, "missing")
    value = record[field]
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise _bad(where, row, field, f"expected a non-empty string, got {value!r}")
    return value


# --- per-schema row builders ----------------------------------------------------------


def arc_reference(record: dict, where: str, row: int) -> dict:
    question = _text(record, "question", where, row)
    answer = _text(record, "answer", where, row).strip()
    labels = ARC_NUMERIC_LABELS if answer in ARC_NUMERIC_LABELS else ARC_LABELS
    # Four options, or five when the question lists a fifth ("... D. text E. text").
    fifth = re.search(rf"(?:^|\s){labels[3]}\.\s.*\s{labels[4]}\.\s", question, flags=re.DOTALL)
    labels = labels if fifth else labels[:4]
    if answer not in labels:
        raise _bad(where, row, "answer", f"{answer!r} is not among the labels {', '.join(labels)}")
    return {"id": _text(record, "title", where, row), "question": question, "labels": list(labels), "answer": answer}


def arc_hf(record: dict, where: str, row: int) -> dict:
    stem = _text(record, "question", where, row)
    choices = record.get("choices")
    if (
        not isinstance(choices, dict)
        or not isinstance(choices.get("label"), list)
        or not isinstance(choices.get("text"), list)
        or len(choices["label"]) != len(choices["text"])
        or not choices["label"]
    ):
        raise _bad(where, row, "choices", "expected {'text': [...], 'label': [...]} of equal, non-zero length")
    labels = [str(label) for label in choices["label"]]
    answer = _text(record, "answerKey", where, row).strip()
    if answer not in labels:
        raise _bad(where, row, "answerKey", f"{answer!r} is not among the labels {', '.join(labels)}")
    # The reference study's layout: the stem with "A. text B. text ..." appended.
    options = " ".join(f"{label}. {text}" for label, text in zip(labels, choices["text"]))
    return {"id": _text(record, "id", where, row), "question": f"{stem} {options}", "labels": labels, "answer": answer}


def _number_or_text(value: Any, where: str, row: int, field: str) -> float | str:
    if isinstance(value, bool) or value is None:
        raise _bad(where, row, field, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise _bad(where, row, field, f"expected a finite number, got {value!r}")
        return float(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise _bad(where, row, field, f"expected a number or a non-empty answer string, got {value!r}")


def openmath_reference(record: dict, where: str, row: int) -> dict:
    return {
        "id": f"openmath-{row}",
        "question": _text(record, "question", where, row),
        "answer": _number_or_text(record.get("answer"), where, row, "answer"),
    }


def openmath_hf(record: dict, where: str, row: int) -> dict:
    return {
        "id": f"openmath-{row}",
        "question": _text(record, "problem", where, row),
        "answer": _number_or_text(record.get("expected_answer"), where, row, "expected_answer"),
    }


def _check_spans(answers: list[str], context: str, where: str, row: int, field: str) -> None:
    for answer in answers:
        if answer not in context:
            raise _bad(where, row, field, f"answer {answer!r} is not found in the context")


def squad_reference(record: dict, where: str, row: int) -> dict:
    context = _text(record, "context", where, row)
    answer = _text(record, "answer", where, row, allow_empty=True)
    answers = [answer] if answer.strip() else []
    _check_spans(answers, context, where, row, "answer")
    return {
        "id": f"squad-{row}",
        "question": _text(record, "question", where, row),
        "context": context,
        "answers": answers,
    }


def squad_hf(record: dict, where: str, row: int) -> dict:
    context = _text(record, "context", where, row)
    answers = record.get("answers")
    if not isinstance(answers, dict) or not isinstance(answers.get("text"), list):
        raise _bad(where, row, "answers", "expected {'text': [...], 'answer_start': [...]}")
    texts = [str(t) for t in answers["text"]]
    _check_spans(texts, context, where, row, "answers")
    unique = list(dict.fromkeys(texts))  # several annotators often give the same span
    return {
        "id": _text(record, "id", where, row),
        "question": _text(record, "question", where, row),
        "context": context,
        "answers": unique,
    }


def _validate_records(task: str, schema: str, records: Iterable[dict], where: str, offset: int = 0) -> list[dict]:
    build = _files(task).builders[schema]
    rows = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _bad(where, index + offset, "*", f"expected a record (mapping), got {type(record).__name__}")
        rows.append(build(record, where, index + offset))
    if not rows:
        raise DataError(f"{where}: the split is empty; the task {task!r} needs at least one row")
    return rows


def check_json_lines(path: Path) -> None:
    """A JSON Lines file (or a .json file holding one document or JSON Lines) parses line by line;
    else DataError naming the file, the line and the column."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            json.loads(text)
            return
        except json.JSONDecodeError as whole:
            if text.lstrip().startswith("["):  # one JSON document: its own position is the useful one
                raise DataError(
                    f"data file {path}, line {whole.lineno}, column {whole.colno}: not valid JSON ({whole.msg})"
                ) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"data file {path}, line {number}, column {exc.colno}: not valid JSON ({exc.msg}); "
                f"each line must hold one JSON record: {_excerpt(line)}"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"data file {path}, line {number}: expected a JSON object (one record), "
                f"got {type(record).__name__}: {_excerpt(line)}"
            )


def _excerpt(line: str, width: int = 60) -> str:
    line = line.strip()
    return repr(line if len(line) <= width else line[:width] + "...")


def _read_file(path: Path) -> list[dict]:
    import pandas as pd

    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.suffix in (".jsonl", ".json"):
        check_json_lines(path)
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix in (".jsonl", ".json"):
            frame = pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
        else:
            raise DataError(f"data file {path}: unsupported format {path.suffix!r} (parquet, jsonl, json)")
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(f"data file {path} cannot be read: {exc}") from exc
    return [{k: _plain(v) for k, v in rec.items()} for rec in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    """numpy arrays/scalars from parquet into Python lists/scalars."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def load_rows(*, task: str, split: str, source: str = "reference", n: int | str | None = None) -> list[dict]:
    """The first `n` validated rows of a task's split (all rows when n is None or "all").
    Asking for more rows than the split has is an error, never a silent smaller sample."""
    files = _files(task)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    if source == "reference":
        path = data_dir() / "reference-study" / f"{split}-{files.reference_file}.parquet"
        rows = _validate_records(task, "reference", _read_file(path), str(path))
        where = str(path)
    elif source == "hf":
        records, paths = [], []
        for name in files.hf_files[split]:
            path = data_dir() / "hf" / name
            records.extend(_read_file(path))
            paths.append(str(path))
        rows_taken = files.hf_rows.get(split, slice(None))
        records, offset = records[rows_taken], rows_taken.start or 0
        where = " + ".join(paths)
        rows = _validate_records(task, "hf", records, where, offset)
    else:
        rows, where = _load_hub(task, split, source)
    if n is None or n == "all":
        return rows
    if n > len(rows):
        raise DataError(_too_many(SPLIT_KEYS[split], n, len(rows), task, split, source, where))
    return rows[:n]


SPLIT_KEYS = {"train": "n_train", "test": "n_eval"}  # the config key that sizes each split's sample


def _too_many(key: str, n: int, available: int, task: str, split: str, source: str, where: str) -> str:
    return (
        f"config key '{key}': {n} is more than the {available:,} rows of the {task} {split} split "
        f"(data_source {source!r}: {where}); allowed: an integer from 1 to {available}, or all"
    )


def available_rows(*, task: str, split: str, source: str) -> tuple[int, str] | None:
    """(rows in the split, where they are) read from the files' metadata or line counts, without
    validating the rows; None where only loading can tell (the Hub, a missing or other layout)."""
    if source == "reference":
        path = data_dir() / "reference-study" / f"{split}-{_files(task).reference_file}.parquet"
        return (_parquet_rows(path, path.stat().st_mtime_ns), str(path)) if path.is_file() else None
    if source == "hf":
        files = _files(task)
        paths = [data_dir() / "hf" / name for name in files.hf_files[split]]
        if not all(p.is_file() for p in paths):
            return None
        count = sum(_line_count(p, p.stat().st_mtime_ns) for p in paths)
        count = len(range(count)[files.hf_rows.get(split, slice(None))])
        return count, " + ".join(map(str, paths))
    if source == "hub":
        return None
    folder = Path(source).expanduser() / task
    files = [p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")] if folder.is_dir() else []
    path = folder / f"{split}.jsonl"
    if [p.name for p in files if p.stem.startswith(split)] != [path.name]:
        return None  # not the plain <task>/<split>.jsonl layout: datasets decides what it reads
    return _line_count(path, path.stat().st_mtime_ns), str(path)


@functools.lru_cache(maxsize=64)
def _parquet_rows(path: Path, mtime_ns: int) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


@functools.lru_cache(maxsize=64)
def _line_count(path: Path, mtime_ns: int) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def check_sample_counts(config: dict) -> None:
    """n_train and n_eval fit the splits they sample (where the files tell without loading):
    a larger number is a ConfigError naming the rows available, never a silently smaller run."""
    wanted = [("n_train", "train", [config["train_task"]]), ("n_eval", "test", list(config["eval_tasks"]))]
    for key, split, tasks in wanted:
        n = config[key]
        if n == "all":
            continue
        for task in tasks:
            found = available_rows(task=task, split=split, source=config["data_source"])
            if found is not None and n > found[0]:
                from .config import ConfigError

                raise ConfigError(_too_many(key, n, found[0], task, split, config["data_source"], found[1]))


def _load_hub(task: str, split: str, source: str) -> tuple[list[dict], str]:
    """`hub`: the official dataset; a local directory: `<dir>/<task>/` in the HF schema."""
    import datasets

    if source == "hub":
        name, config, split_names = _files(task).hub
        location, split_name = name, split_names[split]
    else:
        directory = Path(source).expanduser()
        if not directory.is_dir():
            raise DataError(f"data_source {source!r} is neither reference, hf, hub nor an existing directory")
        location, config, split_name = str(directory / task), None, split
        if not Path(location).is_dir():
            raise DataError(f"data_source {source!r} has no folder {task!r} (expected {location}/{split}.jsonl)")
        # datasets reports a broken line as "An error occurred while generating the dataset": find it first.
        for path in sorted(Path(location).glob("*.json*")):
            if path.suffix in (".json", ".jsonl"):
                check_json_lines(path)
    try:
        dataset = datasets.load_dataset(location, config, split=split_name)
    except Exception as exc:  # datasets raises many types: name the dataset and how to fix it
        raise DataError(f"could not load the {task} {split} split from {location!r}: {exc}") from exc
    where = f"{location} [{split_name}]"
    return _validate_records(task, "hf", (dict(r) for r in dataset), where), where
