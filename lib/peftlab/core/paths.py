"""Where the project's files are: the checkout, its params/, and paths relative to it."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The project's root: $PEFTLAB_ROOT, else the checkout this package lives in."""
    env = os.environ.get("PEFTLAB_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[3]


def params_dir() -> Path:
    return repo_root() / "params"


def resolve_path(path: str | os.PathLike) -> Path:
    """Relative paths mean the same from a notebook (cwd notebooks/) and from the shell."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path
