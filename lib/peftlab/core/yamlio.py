"""YAML mappings read from files, with errors as one line naming file, line and column."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from peftlab.core.errors import ConfigError


def yaml_error_message(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line error as one phrase with 1-based line and column."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        problem += f" ({context})"
    return where + problem


def read_yaml(path: str | os.PathLike, *, what: str = "config file") -> dict[str, Any]:
    """A YAML mapping from a file; any problem is one ConfigError line naming the file (and line, column)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}, {yaml_error_message(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: must hold a mapping of keys to values, not a {type(data).__name__}")
    return data
