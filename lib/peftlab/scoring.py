"""Scoring of model replies for the three evaluation tasks, under two protocols side by side.

Every evaluation prompt asks the model to put its final answer in ``\\boxed{}``. Each reply
is scored twice:

``corrected``
    Official metric definitions; no item is ever dropped. The boxed answer is the *last*
    ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, so ``\\boxed{\\frac{1}{2}}``
    yields ``\\frac{1}{2}``. A reply is ``parsed_ok`` when a boxed answer was found *and* it
    parses for the task. ARC has up to five options (A-E, 1-5); an OpenMath answer is a number
    optionally followed by unit words (``1.5 million``, ``2\\pi``, ``5!`` are unparsed), and
    math-verify's equivalence judgement is reported beside the exact match
    (``math_verify_ok``); a SQuAD v2 abstention sentence ("The passage does not contain the
    answer") is read as no answer. All corrected summary numbers are fractions in 0..1
    (OpenMath absolute differences are raw).

``reference``
    Reproduces the reference study's scoring code exactly, defects included, so that its
    published numbers can be reproduced (see ``reference_metrics``). Its numbers keep the
    study's units and keys: ARC ``macro_f1`` in 0..1, every ``accuracy``, the
    ``format_success_rate`` and all SQuAD metrics in percent, OpenMath ``avg_abs_diff`` raw
    (``REFERENCE_METRIC_UNITS``). By default they are rounded as the study rounded them
    (macro-F1 to 4 decimals, percentages to 2, ``avg_abs_diff`` to 6).

Defects of the reference protocol, kept on purpose:

* extraction takes the *first* ``\\boxed{`` and stops at the first ``}`` (nested braces break
  it: ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1``); ``\\fbox`` is not recognised;
* ARC: gold labels ``"1"``..``"4"`` become ``None`` and are never correct; a multi-character
  answer is read as its first character in A-D (``"The answer is B"`` reads ``A``, from
  "ANSWER"); unparsed predictions are dropped from the macro-F1 confusion matrix;
* OpenMath: only ``float()`` parses the boxed text (``1,234``, ``\\frac{3}{4}``, ``45 bars``
  fail); failures are wrong but excluded from ``avg_abs_diff``; the tolerance is ``< 1e-4``
  absolute;
* SQuAD v2: a reply without ``\\boxed{}`` becomes ``""`` = "no answer", so it scores F1 = 1 on
  every unanswerable question; only the first gold answer is used; a no-answer phrase in the
  box (``unanswerable``) scores EM/F1 0 against the empty gold although it counts as a
  correct abstention in ``NoAns_Accuracy``.

Public API: ``extract_boxed``, ``reference_extract_boxed``, ``parse_reply``, ``score_items``,
``summarize``, ``reference_metrics``, ``math_equivalent``, ``openmath_math_verify``,
``is_no_answer``. Gold formats: ARC a label ``"A"``..``"E"`` or ``"1"``..``"5"`` (the
reference protocol knows A-D only); OpenMath a number or a string such as ``"\\frac{3}{4}"``; SQuAD v2 a list
of answer strings (empty list = unanswerable).
"""

from __future__ import annotations

import math
import numbers
import re
import statistics
import string
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

ARC_LETTERS = ("A", "B", "C", "D")  # the reference protocol's classes (and the corrected base classes)
ARC_OPTION_LETTERS = ("A", "B", "C", "D", "E")  # corrected: ARC questions have up to five options

# Units of the reference protocol's numbers, as the study reported them.
REFERENCE_METRIC_UNITS = {
    "arc": {"macro_f1": "fraction 0..1", "accuracy": "percent", "format_success_rate": "percent"},
    "openmath": {
        "avg_abs_diff": "raw absolute difference (mean over float()-parsed replies)",
        "accuracy": "percent",
        "format_success_rate": "percent",
    },
    "squad_v2": {
        "EM": "percent",
        "F1": "percent",
        "HasAns_EM": "percent",
        "HasAns_F1": "percent",
        "NoAns_Accuracy": "percent",
        "AvNA_Accuracy": "percent",
        "format_success_rate": "percent",
    },
}

OPENMATH_REL_TOL = 1e-6  # corrected: |pred - gold| <= 1e-6 * max(1, |gold|)


def _task(task: str):
    """The task's registry entry (peftlab.tasks), which knows its parser and metrics."""
    from .tasks import get_task

    return get_task(task)


def _check_lengths(replies: Sequence[Any], golds: Sequence[Any]) -> None:
    if len(replies) != len(golds):
        raise ValueError(f"replies and golds differ in length: {len(replies)} replies, {len(golds)} golds")


def _as_text(reply: Any) -> str:
    return reply if isinstance(reply, str) else ("" if reply is None else str(reply))


# ======================================================================================
# Reference protocol: the study's code, reproduced as it was (defects included)
# ======================================================================================

_REF_BOXED_RE = re.compile(r"\\boxed\{\s*(.*?)\s*\}", flags=re.DOTALL)
_REF_ARTICLES = {"a", "an", "the"}
_REF_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_REF_EMPTY_ANSWERS = {"", "unanswerable", "unknown", "no answer", "n a", "none", "null"}


def reference_extract_boxed(text: str) -> str | None:
    """The study's extraction: the first ``\\boxed{...}``, cut at the first ``}``."""
    if not isinstance(text, str):
        return None
    m = _REF_BOXED_RE.search(text)
    return m.group(1).strip() if m else None


def _ref_normalize_arc_option(s: str | None) -> str | None:
    if s is None:
        return None
    t = s.strip().upper()
    if len(t) > 1:
        for ch in t:
            if ch in {"A", "B", "C", "D"}:
                return ch
        return None
    return t if t in {"A", "B", "C", "D"} else None


def _ref_squad_normalize(s: str) -> str:
    if not isinstance(s, str):
        return ""
    s = s.lower()
    s = s.translate(_REF_PUNCT_TABLE)
    tokens = [w for w in s.split() if w not in _REF_ARTICLES]
    return " ".join(tokens)


def _ref_squad_em(pred: str, gold: str) -> int:
    return int(_ref_squad_normalize(pred) == _ref_squad_normalize(str(gold)))


def _token_f1(pred_toks: list[str], gold_toks: list[str]) -> float:
    """SQuAD token F1; two empty token lists agree (both "no answer")."""
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_toks)
    recall = num_same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _ref_squad_f1(pred: str, gold: str) -> float:
    return _token_f1(_ref_squad_normalize(pred).split(), _ref_squad_normalize(str(gold)).split())


def _ref_is_empty_like(s: str) -> bool:
    return _ref_squad_normalize(s) in _REF_EMPTY_ANSWERS


def _ref_arc_gold(gold: Any) -> str | None:
    return _ref_normalize_arc_option(str(gold))


def _ref_math_item(gold: Any, pred: str) -> tuple[bool, float | None]:
    """(correct, abs diff or None when excluded from the mean), as the study computed it."""
    try:
        gold_num = float(str(gold).strip())
        pred_num = float(pred) if pred is not None and pred != "" else None
    except (TypeError, ValueError):
        return False, None
    correct = pred_num is not None and abs(gold_num - pred_num) < 1e-4
    return correct, (abs(gold_num - pred_num) if pred_num is not None else None)


def _ref_squad_gold(gold: Any) -> str:
    answers = _as_gold_list(gold)
    return answers[0] if answers else ""


def _maybe_round(value: float | None, digits: int, rounded: bool) -> float | None:
    if value is None or not rounded:
        return value
    return round(value, digits)


def reference_metrics(task: str, replies: Sequence[str], golds: Sequence[Any], *, rounded: bool = True) -> dict:
    """The reference study's computation, with its keys and units.

    * ``arc``: ``{macro_f1 (0..1), accuracy (%), format_success_rate (%)}``. Gold
      ``normalize_arc_option(str(answer))`` (``"1"``..``"4"`` -> None, never correct); the
      macro-F1's 4x4 confusion matrix only counts pairs where both gold and prediction are in
      A-D; per-class precision/recall/F1 are 0 when their denominator is 0.
    * ``openmath``: ``{avg_abs_diff (raw), accuracy (%), format_success_rate (%)}``.
      ``float()`` parses the boxed text; correct when ``|gold - pred| < 1e-4``;
      ``avg_abs_diff`` is the mean over replies whose text ``float()`` parsed, None when none
      did (the study's code raised ZeroDivisionError when every boxed text failed ``float()``;
      None is returned instead).
    * ``squad_v2``: ``{EM, F1, HasAns_EM, HasAns_F1, NoAns_Accuracy, AvNA_Accuracy,
      format_success_rate}``, all percent; only the first gold answer is used (``""`` when
      there is none); a reply without ``\\boxed{}`` is the prediction ``""``. Subset means
      over no item are 0.0, as in the study.

    ``format_success_rate`` is the share of replies in which the study's extraction found a
    box. ``rounded=True`` rounds as the study did (macro-F1 4 decimals, percentages 2,
    ``avg_abs_diff`` 6); ``rounded=False`` returns the unrounded values.
    """
    spec = _task(task)
    _check_lengths(replies, golds)
    replies = [_as_text(r) for r in replies]
    boxed = [reference_extract_boxed(r) for r in replies]
    total = len(replies)
    format_rate = (sum(b is not None for b in boxed) / total * 100) if total else 0.0
    metrics = spec.reference_metrics(boxed, list(golds), rounded)
    return {**metrics, "format_success_rate": _maybe_round(format_rate, 2, rounded)}


def reference_arc(boxed: list[str | None], golds: list, rounded: bool) -> dict:
    from .stats import macro_f1

    total = len(boxed)
    gold_opts = [_ref_arc_gold(g) for g in golds]
    preds = [_ref_normalize_arc_option(b) for b in boxed]
    correct = sum(p is not None and t == p for t, p in zip(gold_opts, preds))
    # the study's 4 x 4 confusion matrix counts only pairs whose gold and prediction are both A-D
    f1 = macro_f1(gold_opts, preds, ARC_LETTERS, fixed_classes=True)
    acc = (correct / total * 100) if total else 0.0
    return {"macro_f1": _maybe_round(f1, 4, rounded), "accuracy": _maybe_round(acc, 2, rounded)}


def reference_openmath(boxed: list[str | None], golds: list, rounded: bool) -> dict:
    total = len(boxed)
    preds = [(b or "").strip() for b in boxed]
    correct = 0
    diffs = []
    for gold, pred in zip(golds, preds):
        ok, diff = _ref_math_item(gold, pred)
        correct += ok
        if diff is not None:
            diffs.append(diff)
    acc = correct / total * 100 if total else 0.0
    avg_diff = sum(diffs) / len(diffs) if diffs else None
    return {"avg_abs_diff": _maybe_round(avg_diff, 6, rounded), "accuracy": _maybe_round(acc, 2, rounded)}


def reference_squad(boxed: list[str | None], golds: list, rounded: bool) -> dict:
    total = len(boxed)
    preds = [(b or "").strip() for b in boxed]
    gold_strs = [_ref_squad_gold(g) for g in golds]
    ems = [_ref_squad_em(p, g) for p, g in zip(preds, gold_strs)]
    f1s = [_ref_squad_f1(p, g) for p, g in zip(preds, gold_strs)]
    has_g = [not _ref_is_empty_like(str(g)) for g in gold_strs]
    has_p = [not _ref_is_empty_like(p) for p in preds]

    def _avg(x: list) -> float:
        return sum(x) / len(x) if x else 0.0

    has_idx = [i for i, g in enumerate(has_g) if g]
    no_idx = [i for i, g in enumerate(has_g) if not g]
    em = _avg(ems) * 100
    f1 = _avg(f1s) * 100
    has_em = _avg([ems[i] for i in has_idx]) * 100 if has_idx else 0.0
    has_f1 = _avg([f1s[i] for i in has_idx]) * 100 if has_idx else 0.0
    no_acc = _avg([1.0 if not has_p[i] else 0.0 for i in no_idx]) * 100 if no_idx else 0.0
    avna = sum(g == p for g, p in zip(has_g, has_p)) / total * 100 if total else 0.0
    return {
        "EM": _maybe_round(em, 2, rounded),
        "F1": _maybe_round(f1, 2, rounded),
        "HasAns_EM": _maybe_round(has_em, 2, rounded),
        "HasAns_F1": _maybe_round(has_f1, 2, rounded),
        "NoAns_Accuracy": _maybe_round(no_acc, 2, rounded),
        "AvNA_Accuracy": _maybe_round(avna, 2, rounded),
    }


# ======================================================================================
# Corrected protocol
# ======================================================================================

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


def _unwrap_text(s: str) -> str:
    """Replace ``\\text{x}``-style wrappers (and their nesting) by their content."""
    prev = None
    while prev != s:
        prev, s = s, _TEXT_WRAP_RE.sub(r"\1", s)
    return s


# --- ARC -----------------------------------------------------------------------------

_ARC_PREFIX = r"(?:(?:the\s+)?(?:correct\s+|final\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*)?"
_ARC_RE = re.compile(
    rf"^{_ARC_PREFIX}(?:\((?P<p>[A-E1-5])\)(?P<prest>[\s.:].*)?"
    r"|(?P<b>[A-E1-5])(?P<brest>[.):](?:\s.*)?|\s+\([^()]*\)\s*[.!]?)?)$",
    flags=re.IGNORECASE | re.DOTALL,
)
# A second option right after the first ("A or B", "(A) and (B)", "A/B", "A (B)"): ambiguous.
# A later mention of options in an explanation ("D. Both (A) and (B)") is not.
_ARC_AMBIGUOUS_RE = re.compile(r"^\s*(?:(?i:or|and|/|,|&|;)\s*(?:\([A-Ea-e1-5]\)|[A-E1-5]\b)|\([A-Ea-e1-5]\))")
_DIGIT_TO_LETTER = {"1": "A", "2": "B", "3": "C", "4": "D", "5": "E"}


def _arc_gold_letter(gold: Any) -> str:
    g = str(gold).strip().upper()
    g = _DIGIT_TO_LETTER.get(g, g)
    if g not in ARC_OPTION_LETTERS:
        raise ValueError(f"ARC gold label {gold!r} is not one of A-E or 1-5")
    return g


def _parse_arc(content: str) -> str | None:
    """A letter A-E from boxed content, or None when it is not one unambiguous option.

    Accepts ``C``, ``(C)``, ``C.``, ``C) text``, ``C: text``, ``C (the sun)``, ``Option C``,
    ``The answer is C`` (any case) and the digits 1-5 (mapped to A-E); an explanation may
    name other options (``D. Both (A) and (B)``). A letter directly followed by another
    option (``A or B``, ``(A) or (B)``, ``A/B``, ``A, B``) and free text are unparsed.
    """
    s = _unwrap_text(content).replace("$", "").replace("*", "").strip()
    m = _ARC_RE.match(s)
    if m is None:
        return None
    letter = m.group("p") or m.group("b")
    rest = m.group("prest") or m.group("brest") or ""
    if _ARC_AMBIGUOUS_RE.match(rest.lstrip(".):")):
        return None
    letter = letter.upper()
    return _DIGIT_TO_LETTER.get(letter, letter)


# --- OpenMath ------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FRAC_RE = re.compile(rf"([-+]?)\s*\\frac\s*\{{\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}")
_FRAC_SHORT_RE = re.compile(r"([-+]?)\s*\\frac\s*(\d)\s*(\d)")
_SCI_RE = re.compile(rf"({_NUM})\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*(?:\{{\s*([-+]?\d+)\s*\}}|([-+]?\d+))")
_SLASH_RE = re.compile(rf"({_NUM})\s*/\s*({_NUM})")
_PLAIN_RE = re.compile(_NUM)
_THOUSANDS_RE = re.compile(r"(?<![\d.,])(\d{1,3})((?:,\d{3})+)(?![\d,])")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_PREFIX_RE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_ ]*)?\s*(?:=|\\approx|≈)\s*")
# What may follow the number: words (units, nouns), each maybe ending in . , ; or :, with
# no digit and no operator character (! ^ * × + - / = ...); a hyphen or an apostrophe may
# join letters inside a word.
_WORD = r"[^\W\d_]+(?:['’-][^\W\d_]+)*"
_WORDS_TAIL_RE = re.compile(rf"{_WORD}(?:[.,;:]?\s+{_WORD})*[.,;:]?")
_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    " seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety half halves quarter"
    " quarters third thirds"
)
# A first word that changes the number's value: a multiplier, a constant, a product or power.
_MULTIPLIER_WORDS = frozenset(
    "hundred hundreds thousand thousands million millions billion billions trillion trillions dozen dozens"
    " lakh lakhs crore crores bn pi π e i x times cdot squared cubed plus minus over divided"
    " multiplied factorial power".split()
) | frozenset(_NUMBER_WORDS.split())
_AMBIGUOUS_TAIL_RE = re.compile(
    rf"\b(?:or|and|to|plus|minus|times)\s+(?:a\s+|an\s+)?(?:{'|'.join(_NUMBER_WORDS.split())})\b",
    flags=re.IGNORECASE,
)
_REMOVE_TOKENS = (
    "\\$",
    "$",
    "\\%",
    "%",
    "\\qquad",
    "\\quad",
    "\\,",
    "\\!",
    "\\;",
    "\\:",
    "\\ ",
    "{,}",
    "\\left",
    "\\right",
)


def _strip_outer(s: str) -> str:
    """Drop one enclosing pair of braces or parentheses at a time, while they enclose all."""
    while len(s) >= 2 and (s[0], s[-1]) in {("{", "}"), ("(", ")")}:
        depth = 0
        for i, ch in enumerate(s):
            depth += ch in "({"
            depth -= ch in ")}"
            if depth == 0 and i < len(s) - 1:
                return s
        s = s[1:-1].strip()
    return s


def parse_number(text: str) -> float | None:
    """A number from an answer string (no box extraction), or None when it has none.

    Handles ``$`` and ``\\$``, LaTeX spacing (``\\,``), thousands commas (``1,234``),
    ``\\frac{a}{b}``/``\\dfrac``/``\\tfrac``/``a/b``, signs, decimals, scientific notation
    (``1.5e3``, ``1.5 \\times 10^{3}``), ``%``/``\\%`` (dropped: ``50\\%`` -> 50), degrees,
    ``\\text{...}`` wrappers, a leading ``x =`` and trailing units or words (``45 granola
    bars`` -> 45, ``5.`` -> 5). The number must come first; what follows it may only be
    words, with no digit and no operator (``! ^ * × + - / =``), and the first word must not
    change the value (a multiplier, number word or constant: ``1.5 million``, ``2 dozen``,
    ``2 pi``, ``3 x 4``). So ``2\\pi``, ``5!``, ``\\sqrt{2}``, ``2^{10}``, ``4 + 1``, ``1, 2``,
    ``5 or 6``, ``12 feet 6 inches`` and mixed numbers such as ``2\\frac{1}{2}`` are
    unparsed. Non-finite values and division by zero give None.
    """
    s = _unwrap_text(str(text)).replace("\u2212", "-")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    for tok in _REMOVE_TOKENS:
        s = s.replace(tok, "")
    s = _DEGREE_RE.sub("", s)
    s = _THOUSANDS_RE.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), s)
    s = _strip_outer(_PREFIX_RE.sub("", s.strip(), count=1).strip())

    value: float | None = None
    end = 0
    if m := _FRAC_RE.match(s) or _FRAC_SHORT_RE.match(s):
        num, den = float(m.group(2)), float(m.group(3))
        value = None if den == 0 else (-1.0 if m.group(1) == "-" else 1.0) * num / den
        end = m.end()
    elif m := _SCI_RE.match(s):
        value = float(f"{m.group(1)}e{m.group(2) or m.group(3)}")
        end = m.end()
    elif m := _SLASH_RE.match(s):
        num, den = float(m.group(1)), float(m.group(2))
        value = None if den == 0 else num / den
        end = m.end()
    elif m := _PLAIN_RE.match(s):
        value = float(m.group(0))
        end = m.end()
    if value is None or not math.isfinite(value):
        return None
    rest = s[end:].strip()
    if not rest or re.fullmatch(r"[.,;]+", rest):  # "5", "5."
        return value
    if not _WORDS_TAIL_RE.fullmatch(rest):
        return None  # an expression follows (\pi, ^2, + 1, ", 2", 5!, 12 feet 6 inches, ...)
    if rest.split()[0].lower().rstrip(".,;:") in _MULTIPLIER_WORDS or _AMBIGUOUS_TAIL_RE.search(rest):
        return None  # "1.5 million", "3 x 4", "2 pi", "5 or six", "2 and a half"
    return value


def _openmath_gold(gold: Any) -> float:
    if isinstance(gold, numbers.Real) and not isinstance(gold, bool):
        value = float(gold)
    elif isinstance(gold, str):
        value = parse_number(gold)
    else:
        value = None
    if value is None or not math.isfinite(value):
        raise ValueError(f"OpenMath gold {gold!r} cannot be parsed as a finite number")
    return value


# --- math-verify ----------------------------------------------------------------------

_MATH_VERIFY_TIMEOUT_S = 5  # per parse/compare, in the main thread only (signal based)
_DOLLAR_RE = re.compile(r"(?<!\\)\$")


def _math_verify_timeout() -> int | None:
    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    return _MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _gold_latex(gold: Any) -> str:
    if isinstance(gold, numbers.Real) and not isinstance(gold, bool):
        value = float(gold)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(gold).strip()


def _math_verify_parse(answer: str, timeout: int | None) -> list:
    from math_verify import parse

    return parse(f"\\boxed{{{_DOLLAR_RE.sub('', answer)}}}", parsing_timeout=timeout)


def math_equivalent(reply_or_answer: str, gold: Any) -> bool:
    """Whether math-verify judges an answer mathematically equivalent to an OpenMath gold.

    The answer is the last ``\\boxed{}`` content of ``reply_or_answer`` when it holds one,
    else the whole string; the gold is a number or a LaTeX string. ``\\frac{1}{2}`` = 0.5,
    ``2^{10}`` = 1024, ``1,024`` = 1024. An empty answer, a parse failure, a timeout or any
    error gives False; it works outside the main thread too (without timeouts there).
    """
    text = _as_text(reply_or_answer)
    boxed = extract_boxed(text)
    answer = (boxed if boxed is not None else text).strip()
    gold_text = _gold_latex(gold)
    if not answer or not gold_text:
        return False
    try:
        from math_verify import verify

        timeout = _math_verify_timeout()
        parsed_gold = _math_verify_parse(gold_text, timeout)
        parsed_answer = _math_verify_parse(answer, timeout)
        if not parsed_gold or not parsed_answer:
            return False
        return bool(verify(parsed_gold, parsed_answer, timeout_seconds=timeout))
    except ImportError:
        raise
    except Exception:  # math-verify's TimeoutError, sympy errors, recursion limits, ...
        return False


def openmath_math_verify(items: pd.DataFrame) -> pd.Series:
    """The ``math_verify_ok`` column from an items frame's ``reply`` and ``gold`` columns.

    For items files written before the column existed. A reply without a balanced box is False.
    """
    values = [
        extract_boxed(_as_text(reply)) is not None and math_equivalent(_as_text(reply), gold)
        for reply, gold in zip(items["reply"], items["gold"])
    ]
    return pd.Series(values, index=items.index, dtype=bool, name="math_verify_ok")


# --- SQuAD v2 ------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD v2's official normalisation: lower, drop punctuation, articles, extra spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s, flags=re.UNICODE)
    return " ".join(s.split())


def _squad_tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def compute_exact(a_gold: str, a_pred: str) -> int:
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    return _token_f1(_squad_tokens(a_pred), _squad_tokens(a_gold))


# Replies that mean "no answer" (compared after normalize_answer), and patterns for longer
# abstentions ("The passage does not contain the answer", "Cannot be determined from the text").
NO_ANSWER_PHRASES = (
    "unanswerable",
    "not answerable",
    "no answer",
    "cannot be answered",
    "can not be answered",
    "cannot answer",
    "none",
    "n/a",
    "unknown",
    "not in the passage",
    "not in the context",
    "not in the text",
    "not mentioned",
    "not mentioned in the passage",
    "not mentioned in the context",
    "not stated",
    "not provided",
    "not given",
    "not specified",
    "not available",
    "no information",
    "insufficient information",
    "not enough information",
    "i do not know",
    "i dont know",
)
_NO_ANSWER_NORMALIZED = frozenset(normalize_answer(p) for p in NO_ANSWER_PHRASES) | {""}
_SOURCE = r"(?:passage|context|text|paragraph|article|document|excerpt|given information|information given)"
_NOT_THERE = (
    r"(?:in|found|mentioned|given|provided|stated|present|available|contained|included|specified|answered"
    r"|addressed|discussed|known|indicated)"
)
_NO_ANSWER_PATTERNS = tuple(
    re.compile(p)
    for p in (
        # "not mentioned in the passage", "not found in the text", "not stated"
        rf"^(?:it is |this is |that is |its )?not (?:explicitly |directly |clearly )?{_NOT_THERE}(?: (?:in|by|from) {_SOURCE})?$",
        # "The answer is not in the passage", "this information is not provided in the text"
        rf"^(?:this |that )?(?:answer|information|question)(?: to (?:this|that) question)? (?:is|was|cannot be|can not be)"
        rf" not (?:explicitly |directly |clearly )?{_NOT_THERE}\b",
        r"^(?:answer|information|question) (?:cannot|can not|could not) be (?:answered|found|determined)\b",
        # "The passage does not contain the answer", "the text doesn't say"
        rf"^(?:given |provided )?{_SOURCE} (?:does not|doesnt|do not|did not|cannot|can not|fails to|is silent)\b",
        # "There is no answer", "No answer is provided in the text", "no information given"
        r"^(?:there is |there s |theres |there are )?no (?:answer|information|mention|data|details|relevant information)\b",
        # "Cannot be determined from the passage", "it is impossible to tell"
        r"^(?:it |this |that |question |answer )?(?:cannot|can not|cant|could not|is not possible to|is impossible to)"
        r" (?:be )?(?:determined|answered|found|known|inferred|identified|determine|answer|find|tell|say|know)\b",
        r"^(?:question is |this question is |it is )?(?:unanswerable|not answerable)\b",
    )
)


def is_no_answer(text: str) -> bool:
    """Whether a SQuAD v2 prediction means "no answer" (an abstention), after normalisation.

    ``""``, a phrase of ``NO_ANSWER_PHRASES`` or a sentence that says the source lacks the
    answer ("The passage does not contain the answer", "Cannot be determined from the
    passage"); an ordinary span such as ``not guilty`` or ``None of the above`` is not.
    """
    norm = normalize_answer(_unwrap_text(text))
    return norm in _NO_ANSWER_NORMALIZED or any(p.search(norm) for p in _NO_ANSWER_PATTERNS)


def _as_gold_list(gold: Any) -> list[str]:
    if gold is None:
        return []
    if isinstance(gold, str):
        return [gold]
    if isinstance(gold, float) and math.isnan(gold):
        return []
    if hasattr(gold, "__iter__"):  # list, tuple, numpy array read back from parquet
        return [str(a) for a in gold]
    raise ValueError(f"SQuAD v2 gold {gold!r} is not a list of answer strings")


def _squad_golds(gold: Any) -> tuple[list[str], bool]:
    """Official gold list (answers normalising to "" dropped; none left -> [""]), has_answer."""
    answers = [a for a in _as_gold_list(gold) if normalize_answer(a)]
    return (answers or [""]), bool(answers)


def _squad_literal(reply: str) -> tuple[str, bool]:
    """The prediction text as written (boxed content, else the whole reply), box found."""
    boxed = extract_boxed(reply)
    text = boxed if boxed is not None else reply.strip()
    return _unwrap_text(text).strip(), boxed is not None


def _squad_prediction(reply: str) -> tuple[str, bool]:
    text, boxed = _squad_literal(reply)
    return ("" if is_no_answer(text) else text), boxed


# --- per reply ------------------------------------------------------------------------


def parse_reply(task: str, reply: str) -> tuple[object, bool]:
    """The corrected protocol's reading of one reply: ``(value, parsed_ok)``.

    ``arc``: a letter A-E or None. ``openmath``: a float or None. ``squad_v2``: the
    prediction string used for scoring (``""`` = no answer), even when ``parsed_ok`` is
    False; it is the boxed content, or the whole reply (stripped) when there is no box, and an
    abstention (``is_no_answer``) becomes ``""``. ``parsed_ok`` is True when a box
    was found and its content parsed for the task (for SQuAD: when a box was found).
    """
    return _task(task).parse(_as_text(reply))


def parse_arc(reply: str) -> tuple[object, bool]:
    boxed = extract_boxed(reply)
    value = None if boxed is None else _parse_arc(boxed)
    return value, value is not None


def parse_openmath(reply: str) -> tuple[object, bool]:
    boxed = extract_boxed(reply)
    value = None if boxed is None else parse_number(boxed)
    return value, value is not None


def score_items(task: str, replies: Sequence[str], golds: Sequence[Any]) -> pd.DataFrame:
    """Per-item scores under both protocols, one row per item in input order.

    Columns: ``parsed`` (the parsed value as text, ``""`` when unparsed),
    ``parsed_ok``, ``score`` (corrected, 0..1), then per task ``gold_letter`` (arc, A-E),
    ``abs_diff`` (openmath; NaN when unparsed) and ``math_verify_ok`` (openmath: the last box
    is equivalent to the gold for ``math_equivalent``; False without a box), ``em`` and
    ``has_answer`` (squad_v2; EM and F1 are the better of the abstention reading and the
    literal text, so ``\\boxed{None}`` matches a gold "None"), and
    the reference protocol's ``ref_parsed`` (its parsed text, ``""`` for none) and
    ``ref_score`` (arc/openmath: 1.0/0.0 correct; squad_v2: F1 in 0..1 against the first
    gold answer).

    The frame holds neither the replies nor the golds: ``summarize`` needs them, so the
    caller adds them as columns ``reply`` and ``gold`` (for example by concatenating this
    frame with its own item columns).
    """
    spec = _task(task)
    _check_lengths(replies, golds)
    rows = []
    for raw_reply, gold in zip(replies, golds):
        reply = _as_text(raw_reply)
        value, ok = spec.parse(reply)
        rows.append(spec.score_item(reply, reference_extract_boxed(reply), value, ok, gold))
    extra = dict(spec.item_columns)
    columns = ["parsed", "parsed_ok", "score", *extra, "ref_parsed", "ref_score"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"parsed_ok": bool, "score": float, "ref_score": float, **extra})


def score_arc(reply: str, ref_boxed: str | None, value, ok: bool, gold) -> dict:
    letter = _arc_gold_letter(gold)
    ref_pred = _ref_normalize_arc_option(ref_boxed)
    return {
        "parsed": value or "",
        "parsed_ok": ok,
        "score": float(value == letter),
        "gold_letter": letter,
        "ref_parsed": ref_pred or "",
        "ref_score": float(ref_pred is not None and ref_pred == _ref_arc_gold(gold)),
    }


def score_openmath(reply: str, ref_boxed: str | None, value, ok: bool, gold) -> dict:
    ref_pred = (ref_boxed or "").strip()
    boxed = extract_boxed(reply)
    equivalent = boxed is not None and math_equivalent(boxed, gold)
    try:
        gold_num = _openmath_gold(gold)
    except ValueError:
        # A gold that is no number (an interval "[2,5)", an expression): exact match has nothing to
        # compare, so the item is scored by math-verify's equivalence; a box is what parses.
        gold_num = None
    if gold_num is None:
        return {
            "parsed": boxed if boxed is not None else "",
            "parsed_ok": boxed is not None,
            "score": float(equivalent),
            "abs_diff": math.nan,
            "math_verify_ok": equivalent,
            "ref_parsed": ref_pred,
            "ref_score": float(_ref_math_item(gold, ref_pred)[0]),
        }
    diff = abs(value - gold_num) if ok else math.nan
    return {
        "parsed": repr(value) if ok else "",
        "parsed_ok": ok,
        "score": float(ok and diff <= OPENMATH_REL_TOL * max(1.0, abs(gold_num))),
        "abs_diff": diff,
        "math_verify_ok": equivalent,
        "ref_parsed": ref_pred,
        "ref_score": float(_ref_math_item(gold, ref_pred)[0]),
    }


def score_squad(reply: str, ref_boxed: str | None, value, ok: bool, gold) -> dict:
    answers, has_answer = _squad_golds(gold)
    ref_pred = (ref_boxed or "").strip()
    # A no-answer phrase that is literally the gold ("None") still matches it.
    readings = {value, _squad_literal(reply)[0]}
    return {
        "parsed": value,
        "parsed_ok": ok,
        "score": max(compute_f1(a, r) for a in answers for r in readings),
        "em": float(max(compute_exact(a, r) for a in answers for r in readings)),
        "has_answer": has_answer,
        "ref_parsed": ref_pred,
        "ref_score": _ref_squad_f1(ref_pred, _ref_squad_gold(gold)),
    }


# --- summaries ------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if len(values) else None


def _corrected_macro_f1(gold_letters: Sequence[str], preds: Sequence[str | None]) -> float:
    """Macro-F1 over A-D, plus E when E occurs in gold or predictions.

    An unparsed prediction (None) is a miss of its gold class and a prediction of no class; a
    class predicted but never gold has F1 0; per-class precision/recall/F1 are 0 when their
    denominator is 0. With A-D only the classes, and so the value, are those of the 4-option
    matrix.
    """
    from .stats import macro_f1

    return macro_f1(gold_letters, preds, ARC_OPTION_LETTERS, fixed_classes=False)


def summarize(task: str, items: pd.DataFrame, *, rounded_reference: bool = True) -> dict:
    """Both protocols' task metrics from ``score_items``' frame, and the headline metric.

    ``items`` must carry the columns ``score_items`` writes plus ``reply`` (the raw reply)
    and ``gold`` (the gold as given to ``score_items``, or its text: ``str()`` of an ARC label
    or an OpenMath number scores the same); the reference entry is recomputed from those two
    with ``reference_metrics``. Other columns are ignored.

    ``corrected`` (fractions 0..1; a mean over no item is None):
    * ``arc``: ``accuracy``, ``macro_f1`` (over A-D, plus E when E occurs in gold or
      predictions; an unparsed reply is a false negative of its gold class and a prediction
      of no class; per-class precision/recall/F1 are 0 when their denominator is 0),
      ``parse_rate``, ``n``;
    * ``openmath``: ``accuracy`` (unparsed = wrong, over all n), ``mean_abs_diff`` (the
      reference study's metric, recomputed with the corrected parser, over parsed replies),
      ``median_abs_diff`` (over parsed replies), ``math_verify_accuracy`` (share of
      ``math_verify_ok`` over all n; computed from ``reply``/``gold`` when the column is
      missing), ``math_verify_agreement`` (share of items where ``math_verify_ok`` equals
      ``score == 1``), ``parse_rate``, ``n``;
    * ``squad_v2``: ``em``, ``f1``, ``has_ans_em``, ``has_ans_f1``, ``no_ans_em`` (= no-answer
      accuracy), ``n_has_ans``, ``n_no_ans``, ``parse_rate``, ``n``.

    ``reference``: ``reference_metrics(task, items.reply, items.gold)`` (study keys and units).
    ``headline``: ``{"name", "value", "higher_is_better"}`` from the corrected entry (the
    task's registry entry names it: arc ``macro_f1``, openmath ``mean_abs_diff`` (lower is
    better), squad_v2 ``f1``).
    """
    spec = _task(task)
    required = ("reply", "gold", "parsed_ok", "score", *spec.summary_columns)
    missing = [c for c in required if c not in items.columns]
    if missing:
        raise ValueError(
            f"items for task {task!r} lack the columns {missing}; "
            "use score_items' frame plus the columns 'reply' and 'gold'"
        )
    parsed_ok = [bool(x) for x in items["parsed_ok"]]
    common = {"parse_rate": _mean([float(x) for x in parsed_ok]), "n": len(items)}
    corrected = {**spec.summarize(items, [float(x) for x in items["score"]], parsed_ok), **common}
    reference = reference_metrics(task, list(items["reply"]), list(items["gold"]), rounded=rounded_reference)
    name, higher = spec.headline
    return {
        "corrected": corrected,
        "reference": reference,
        "headline": {"name": name, "value": corrected[name], "higher_is_better": higher},
    }


def summarize_arc(items: pd.DataFrame, scores: list[float], parsed_ok: list[bool]) -> dict:
    preds = [p if ok else None for p, ok in zip(items["parsed"], parsed_ok)]
    return {
        "accuracy": _mean(scores),
        "macro_f1": _corrected_macro_f1(list(items["gold_letter"]), preds) if len(items) else None,
    }


def summarize_openmath(items: pd.DataFrame, scores: list[float], parsed_ok: list[bool]) -> dict:
    diffs = [float(d) for d, ok in zip(items["abs_diff"], parsed_ok) if ok and not math.isnan(float(d))]
    verified = items["math_verify_ok"] if "math_verify_ok" in items.columns else openmath_math_verify(items)
    verified = [bool(x) for x in verified]
    return {
        "accuracy": _mean(scores),
        "mean_abs_diff": _mean(diffs),
        "median_abs_diff": float(statistics.median(diffs)) if diffs else None,
        "math_verify_accuracy": _mean([float(v) for v in verified]),
        "math_verify_agreement": _mean([float(v == (s == 1.0)) for v, s in zip(verified, scores)]),
    }


def summarize_squad(items: pd.DataFrame, scores: list[float], parsed_ok: list[bool]) -> dict:
    has = [bool(x) for x in items["has_answer"]]
    ems = [float(x) for x in items["em"]]
    return {
        "em": _mean(ems),
        "f1": _mean(scores),
        "has_ans_em": _mean([e for e, h in zip(ems, has) if h]),
        "has_ans_f1": _mean([s for s, h in zip(scores, has) if h]),
        "no_ans_em": _mean([e for e, h in zip(ems, has) if not h]),
        "n_has_ans": sum(has),
        "n_no_ans": len(items) - sum(has),
    }
