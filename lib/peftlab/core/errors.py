"""The project's errors. Every error raised on purpose derives from `PeftlabError`, so a caller
(the command line, a notebook) can catch them all; each message names what is wrong and what
is allowed."""

from __future__ import annotations


class PeftlabError(Exception):
    """An error this project raises on purpose, with a message meant for the user."""


class ConfigError(PeftlabError, ValueError):
    """A parameter is unknown, of the wrong type or out of range."""
