"""Atomic writes of files and directories, and record loading that detects damage.

A file or directory is built under a temporary name in its own folder and renamed into place,
so a killed run never leaves one that looks finished. Every record carries a `kind`, a
`status` (ok | failed) and provenance (`meta`).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftlab.core.errors import ConfigError, PeftlabError

REQUIRED_FIELDS = ("kind", "status", "meta")


class ResultError(PeftlabError, ValueError):
    """A result file is missing, truncated or not a result record."""


def atomic_file(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` writes the file under a temporary name beside `path`, which then replaces
    `path` in one rename: readers see the old file or the whole new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_dir(final: str | os.PathLike, build: Callable[[Path], object], *, replace: bool = False) -> Path:
    """`build(tmp)` fills an empty temporary sibling of `final`, which is then renamed into place:
    an interrupted build leaves the old directory (or none) intact, never a partial one.

    replace=False (shared caches): if `final` exists by then, another process built it first;
    it is kept, since a reader may be using it, and this build is discarded.
    replace=True (a run's own outputs): the new directory replaces the old one, which is renamed
    aside, not deleted, until the new one is in place. Leftovers of killed builds are removed
    first: the caller owns `final`, so no other process is building it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if replace:
        leftover = re.compile(rf"\.{re.escape(final.name)}\.[0-9a-f]{{8}}(\.old)?\.tmp")
        for path in final.parent.iterdir():
            if leftover.fullmatch(path.name):
                shutil.rmtree(path, ignore_errors=True)
    token = secrets.token_hex(4)
    tmp = final.with_name(f".{final.name}.{token}.tmp")
    old = final.with_name(f".{final.name}.{token}.old.tmp")
    tmp.mkdir()  # not mkdtemp: the directory gets the umask's permissions, as any other output
    try:
        build(tmp)
        if final.exists() and not replace:
            shutil.rmtree(tmp)
            return final
        if final.exists():
            final.rename(old)
        tmp.rename(final)
    except BaseException:
        if old.exists() and not final.exists():
            old.rename(final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return final


def _jsonable(value: Any) -> Any:
    """NaN/inf become null so the file is strict JSON; numpy scalars become Python ones."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, record: dict) -> Path:
    text = json.dumps(_jsonable(record), indent=2, sort_keys=False, allow_nan=False)
    return atomic_file(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def write_parquet(path: str | os.PathLike, frame) -> Path:
    return atomic_file(path, lambda tmp: frame.to_parquet(tmp, index=False))


def read_record(path: str | os.PathLike) -> dict:
    """Load a result record; a truncated or foreign file is a ResultError, never data."""
    path = Path(path)
    if not path.is_file():
        raise ResultError(f"result file {path} does not exist")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultError(f"result file {path} is corrupted or truncated ({exc}); delete it and rerun") from exc
    if not isinstance(record, dict) or any(field not in record for field in REQUIRED_FIELDS):
        raise ResultError(f"result file {path} is not a result record (needs fields {', '.join(REQUIRED_FIELDS)})")
    if record["status"] not in ("ok", "failed"):
        raise ResultError(f"result file {path} has status {record['status']!r}; expected ok or failed")
    return record


def reusable_record(path: str | os.PathLike, config_hash: str, force: bool, what: str = "run") -> dict | None:
    """The finished record at `path` if it came from this config (None when forced, absent,
    damaged or failed: the run is redone). A finished record of another config is never
    overwritten: that raises, naming both hashes."""
    try:
        record = read_record(path)
    except ResultError:
        return None
    if record["status"] != "ok" or force:
        return None
    if record.get("config_hash") != config_hash:
        raise ConfigError(
            f"{path} already holds a finished {what} of another configuration (hash {record.get('config_hash')}, "
            f"this one {config_hash}); choose another out_dir or set force=true"
        )
    return record
