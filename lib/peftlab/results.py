"""The records module: atomic writes of files and directories, provenance metadata, loading
that detects damage, and the check whether a finished record can be reused.

A file or directory is built under a temporary name in its own folder and renamed into place,
so a killed run never leaves one that looks finished. Every record carries a `kind`, a
`status` (ok | failed) and provenance (`meta`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import repo_root
from .errors import PeftlabError

PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "pandas", "papermill", "snakemake")
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
    from .config import ConfigError

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


def git_state() -> dict:
    root = repo_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def determinism(device: str | None) -> dict:
    """What decides whether rerunning this record's config reproduces it bit for bit."""
    import torch

    info = {
        "seeded": "data order, adapter initialisation and VeRA's random bases follow config['seed']",
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device and device.startswith("cuda"):
        info["cudnn_deterministic"] = torch.backends.cudnn.deterministic
        info["cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["cublas_workspace_config"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        info["nondeterministic_because"] = [
            reason
            for reason, on in (
                (
                    "torch.use_deterministic_algorithms is off (atomic adds in backward passes and SDPA kernels)",
                    not torch.are_deterministic_algorithms_enabled(),
                ),
                (
                    "CUBLAS_WORKSPACE_CONFIG is unset (cuBLAS may pick different reduction orders)",
                    not os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
                ),
                ("cudnn.benchmark is on (kernel choice depends on timing)", torch.backends.cudnn.benchmark),
                ("batched generation pads prompts: batch composition can change low-order bits", True),
            )
            if on
        ]
    else:
        info["nondeterministic_because"] = []  # CPU kernels here are repeatable for a fixed thread count
        info["threads"] = torch.get_num_threads()
    return info


def run_metadata(device: str | None = None) -> dict:
    import torch

    info = {
        "versions": package_versions(),
        "git": git_state(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "determinism": determinism(device),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device and device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def failure(error: BaseException, phase: str) -> dict:
    return {"type": type(error).__name__, "message": str(error), "phase": phase}


def train_record_start(config: Mapping, *, run: str, config_hash: str) -> dict:
    """A training record before the run has finished: failed until training says otherwise
    (a run stopped by anything, even the cluster, leaves this)."""
    from .methods import effective_learning_rate, recorded_alpha

    return {
        "kind": "train",
        "status": "failed",
        "config": dict(config),
        "config_hash": config_hash,
        "run": run,
        "learning_rate": effective_learning_rate(config),
        "alpha": recorded_alpha(config),
    }


def failed_eval_record(
    config: Mapping, *, task: str, identity: dict, config_hash: str, error: dict, meta: dict
) -> dict:
    """The record of an evaluation that did not finish: which model, task and configuration, and why."""
    return {
        "kind": "eval",
        "status": "failed",
        "task": task,
        "model": identity,
        "protocol": config["protocol"],
        "config": dict(config),
        "config_hash": config_hash,
        "error": error,
        "meta": meta,
    }
