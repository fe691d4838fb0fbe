"""The records module: atomic writes of files and directories, provenance metadata, loading
that detects damage, and the check whether a finished record can be reused.

A file or directory is built under a temporary name in its own folder and renamed into place,
so a killed run never leaves one that looks finished. Every record carries a `kind`, a
`status` (ok | failed) and provenance (`meta`).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata

from peftlab.core.paths import repo_root
from peftlab.methods.registry import effective_learning_rate, recorded_alpha

PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "pandas", "papermill", "snakemake")


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
