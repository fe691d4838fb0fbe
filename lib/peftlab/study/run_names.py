"""How runs are named: each trained or untuned model is one folder, outputs/<study>/runs/<name>/.

  openmath-dora-r16-s0          train task, method, rank, seed (a method without a rank: no -r part)
  qwen3-1.7b-openmath-full-s0   prefixed by the base model's short name when a study trains
                                several base models
  base-qwen3-0.6b               an untuned base model

A task name is a lowercase identifier that may hold '_' but not '-' (squad_v2); a method name
holds neither (lora). So a name is read from its end: seed, rank, method, task, and whatever
precedes the task is the base model's short name, which may hold '-'.
"""

from __future__ import annotations

import re
from pathlib import Path

from peftlab.core.errors import ConfigError

BASE_PREFIX = "base-"
# Snakemake's wildcard constraint for a trained run's folder: any folder name but an untuned base's.
TRAIN_RUN_WILDCARD = rf"(?!{re.escape(BASE_PREFIX)})[^/]+"

_TASK = re.compile(r"[a-z][a-z0-9_]*")
_METHOD = re.compile(r"[a-z][a-z0-9]*")
_RANK = re.compile(r"r([0-9]+)")  # a method name of this form would read as a rank
_SEED = re.compile(r"s([0-9]+)")
_TRAIN_RUN_FORM = "'[<base>-]<task>-<method>[-r<rank>]-s<seed>'"


def short_name(base_model: str) -> str:
    """'Qwen/Qwen3-0.6B' -> 'qwen3-0.6b'; a local path -> its folder name, lowercased."""
    return re.sub(r"[^a-z0-9.]+", "-", Path(base_model.rstrip("/")).name.lower()).strip("-")


def train_run_name(task: str, method: str, rank: int | None, seed: int, base_prefix: str = "") -> str:
    """'openmath-dora-r16-s0'; `rank` None (full fine-tuning) leaves out the -r part, and
    `base_prefix` (a base model's short name, for studies of several bases) goes in front.
    The parts themselves are the configuration's to validate (config.TASKS, METHODS)."""
    name = f"{base_prefix}-" if base_prefix else ""
    name += f"{task}-{method}" + ("" if rank is None else f"-r{rank}") + f"-s{seed}"
    if is_base_run(name):
        raise ConfigError(
            f"run name {name!r} would read as an untuned base model's (it starts with "
            f"{BASE_PREFIX!r}); allowed: a base model (folder) name that does not start with it"
        )
    return name


def base_run_name(base_model: str) -> str:
    """'Qwen/Qwen3-0.6B' -> 'base-qwen3-0.6b': the run of an untuned base model."""
    return f"{BASE_PREFIX}{short_name(base_model)}"


def is_base_run(name: str) -> bool:
    """Whether a run name is an untuned base model's (it has no training run)."""
    return name.startswith(BASE_PREFIX)


def parse_run_name(name: str) -> dict:
    """The parts a run name is made of, so that train_run_name or base_run_name gives it back:
    {'kind': 'train', 'task', 'method', 'rank' (None: none), 'seed', 'base_prefix' ('': none)}
    or {'kind': 'base', 'short_name'}. Any other name is a ConfigError."""
    if is_base_run(name):
        short = name[len(BASE_PREFIX) :]
        if short and base_run_name(short) == name:
            return {"kind": "base", "short_name": short}
    else:
        parts = name.split("-")
        rank = _RANK.fullmatch(parts[-2]) if len(parts) >= 4 else None
        head = parts[:-2] if rank else parts[:-1]  # [short name's parts..., task, method]
        seed = _SEED.fullmatch(parts[-1])
        if seed and len(head) >= 2:
            task, method, base_prefix = head[-2], head[-1], "-".join(head[:-2])
            found = {
                "task": task,
                "method": method,
                "rank": int(rank[1]) if rank else None,
                "seed": int(seed[1]),
                "base_prefix": base_prefix,
            }
            if (
                _TASK.fullmatch(task)
                and _METHOD.fullmatch(method)
                and not _RANK.fullmatch(method)
                and base_prefix == short_name(base_prefix)
                and train_run_name(**found) == name  # which refuses leading zeros and an empty prefix
            ):
                return {"kind": "train", **found}
    raise ConfigError(
        f"run name {name!r} is not one this project makes; allowed: {_TRAIN_RUN_FORM} or '{BASE_PREFIX}<base>'"
    )
