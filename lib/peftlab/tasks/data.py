"""Task data: the shipped files and Hub datasets, validated into one row shape per task.

A task's `DataSpec` (tasks/base.py) says where its rows are per source; its row builders (in its
own module) turn one record into the row its prompts read. Sources (`data_source`): `reference`
(the reference study's exact subsets), `hf` (the shipped Hugging Face-schema samples), `hub` (the
official Hub datasets), or a local directory laid out like a Hub dataset
(`<dir>/<task>/{train,test}.jsonl`). A malformed record raises DataError naming the file, the
row and the field.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from peftlab.core.errors import PeftlabError
from peftlab.core.paths import repo_root
from peftlab.tasks.base import SPLITS, DataSpec

SPLIT_KEYS = {"train": "n_train", "test": "n_eval"}  # the config key that sizes each split's sample


class DataError(PeftlabError, ValueError):
    """A data file is missing, or a record in it is malformed."""


def data_dir() -> Path:
    return repo_root() / "data"


def bad_field(where: str, row: int, field: str, problem: str) -> DataError:
    return DataError(f"{where} row {row} field '{field}': {problem}")


def text_field(record: dict, field: str, where: str, row: int, *, allow_empty: bool = False) -> str:
    if field not in record:
        raise bad_field(where, row, field, "missing")
    value = record[field]
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise bad_field(where, row, field, f"expected a non-empty string, got {value!r}")
    return value


def _validate_records(
    spec: DataSpec, task: str, schema: str, records: Iterable[dict], where: str, offset: int = 0
) -> list[dict]:
    build = spec.builders[schema]
    rows = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise bad_field(where, index + offset, "*", f"expected a record (mapping), got {type(record).__name__}")
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


def load_split(
    spec: DataSpec, *, task: str, split: str, source: str = "reference", n: int | str | None = None
) -> list[dict]:
    """The first `n` validated rows of a task's split (all rows when n is None or "all").
    Asking for more rows than the split has is an error, never a silent smaller sample."""
    files = spec
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    if source == "reference":
        if files.reference_file is None:
            raise DataError(f"the task {task!r} has no reference-study data; data_source: hf, hub or a directory")
        path = data_dir() / "reference-study" / f"{split}-{files.reference_file}.parquet"
        rows = _validate_records(spec, task, "reference", _read_file(path), str(path))
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
        rows = _validate_records(spec, task, "hf", records, where, offset)
    else:
        rows, where = _load_hub(spec, task, split, source)
    if n is None or n == "all":
        return rows
    if n > len(rows):
        raise DataError(too_many_rows(SPLIT_KEYS[split], n, len(rows), task, split, source, where))
    return rows[:n]


def too_many_rows(key: str, n: int, available: int, task: str, split: str, source: str, where: str) -> str:
    return (
        f"config key '{key}': {n} is more than the {available:,} rows of the {task} {split} split "
        f"(data_source {source!r}: {where}); allowed: an integer from 1 to {available}, or all"
    )


def available_rows(spec: DataSpec, *, task: str, split: str, source: str) -> tuple[int, str] | None:
    """(rows in the split, where they are) read from the files' metadata or line counts, without
    validating the rows; None where only loading can tell (the Hub, a missing or other layout)."""
    if source == "reference":
        if spec.reference_file is None:
            return None
        path = data_dir() / "reference-study" / f"{split}-{spec.reference_file}.parquet"
        return (_parquet_rows(path, path.stat().st_mtime_ns), str(path)) if path.is_file() else None
    if source == "hf":
        files = spec
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


def _load_hub(spec: DataSpec, task: str, split: str, source: str) -> tuple[list[dict], str]:
    """`hub`: the official dataset; a local directory: `<dir>/<task>/` in the HF schema."""
    import datasets

    if source == "hub":
        name, config, split_names = spec.hub
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
    return _validate_records(spec, task, "hf", (dict(r) for r in dataset), where), where
