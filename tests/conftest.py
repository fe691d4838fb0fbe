"""Shared fixtures: tiny-model configs and a per-test output folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from peftlab.config import resolve_config
from peftlab.core.paths import repo_root

TINY_TRAIN = dict(base_model="tiny", n_train=16, batch_size=4, grad_accum=1, max_length=512, epochs=1, rank=8)
TINY_EVAL = dict(base_model="tiny", n_eval=6, max_new_tokens=12, eval_batch_size=3, n_latency=2)


@pytest.fixture
def tiny_config(tmp_path):
    """resolve_config for the tiny model, writing under tmp_path."""

    def make(**overrides):
        values = {**TINY_TRAIN, **TINY_EVAL, "out_dir": str(tmp_path / "run"), **overrides}
        return resolve_config(overrides=values)

    return make


# Progress bars are for people; in test logs they are noise.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_project_copy(where: Path, extra_studies: dict[str, str] | None = None) -> Path:
    """A project root sharing this checkout's code and data but with its own outputs/ and
    params/ (PEFTLAB_ROOT points the workflow at it)."""
    root = where / "root"
    root.mkdir(parents=True)
    for name in ("data", "notebooks", "report", "workflow", "profiles", "lib"):
        (root / name).symlink_to(repo_root() / name)
    shutil.copytree(repo_root() / "params", root / "params")
    for name, text in (extra_studies or {}).items():
        (root / "params" / "studies" / f"{name}.yaml").write_text(text)
    return root


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """The smoke study run once by the workflow in a project copy: (root, finished process)."""
    import subprocess
    import sys

    root = make_project_copy(tmp_path_factory.mktemp("smoke-study"))
    env = dict(os.environ, PEFTLAB_ROOT=str(root))
    command = [sys.executable, "-m", "peftlab.study.plan", "run", "smoke", "--directory", str(root)]
    return root, subprocess.run(command, cwd=repo_root(), env=env, capture_output=True, text=True)
