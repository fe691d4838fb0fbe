"""Where a reply's answer is: the ``\\boxed{}`` every evaluation prompt asks for.

``extract_boxed`` (corrected protocol): the *last* balanced ``\\boxed{...}`` or ``\\fbox{...}``,
nested braces kept. ``reference_extract_boxed``: the reference study's extraction, defects kept:
the *first* ``\\boxed{`` cut at the first ``}``, no ``\\fbox``.
"""

from __future__ import annotations

import re

_REF_BOXED_RE = re.compile(r"\\boxed\{\s*(.*?)\s*\}", flags=re.DOTALL)


def reference_extract_boxed(text: str) -> str | None:
    """The study's extraction: the first ``\\boxed{...}``, cut at the first ``}``."""
    if not isinstance(text, str):
        return None
    m = _REF_BOXED_RE.search(text)
    return m.group(1).strip() if m else None


_BOX_OPEN_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_TEXT_WRAP_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|texttt|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}"
)


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the ``}`` closing the group whose ``{`` ends just before ``start``."""
    depth = 1
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # an escaped character (\{, \}, \\) is not a group delimiter
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _boxes(text: str) -> list[str]:
    """Contents of the top-level balanced ``\\boxed{}``/``\\fbox{}`` groups, in order."""
    found = []
    pos = 0
    while True:
        m = _BOX_OPEN_RE.search(text, pos)
        if m is None:
            return found
        end = _closing_brace(text, m.end())
        if end is None:  # unbalanced (e.g. a reply cut off): look for a later box
            pos = m.end()
            continue
        found.append(text[m.end() : end])
        pos = end + 1


def extract_boxed(text: str) -> str | None:
    """The content (stripped) of the last balanced ``\\boxed{...}`` or ``\\fbox{...}``.

    Nested braces are kept (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``); a box whose content
    is itself a single box is unwrapped. None when the text holds no balanced box.
    """
    if not isinstance(text, str):
        return None
    found = _boxes(text)
    if not found:
        return None
    content = found[-1].strip()
    while True:  # \boxed{\boxed{5}} -> 5
        m = _BOX_OPEN_RE.match(content)
        if m is None or _closing_brace(content, m.end()) != len(content) - 1:
            return content
        content = content[m.end() : -1].strip()


def unwrap_text(s: str) -> str:
    """Replace ``\\text{x}``-style wrappers (and their nesting) by their content."""
    prev = None
    while prev != s:
        prev, s = s, _TEXT_WRAP_RE.sub(r"\1", s)
    return s
