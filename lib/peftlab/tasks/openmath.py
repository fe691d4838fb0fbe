"""OpenMath (OpenMathInstruct-2): a math problem answered by one number.

Rows: id, question, answer (a float, or a string such as "\\frac{3}{4}"). Corrected scoring reads
a number from the last box (exact within a relative 1e-6) and reports math-verify's equivalence
beside it; the reference replica parses the first box with `float()` and averages AbsDiff over
the replies that parse.
"""

from __future__ import annotations

import math
import numbers
import re
import statistics
import threading
from typing import Any

import pandas as pd

from peftlab.tasks.base import Column, DataSpec, Measure, Presentation, Prompting, Scoring, Task
from peftlab.tasks.boxed import extract_boxed, unwrap_text
from peftlab.tasks.common import (
    as_text,
    maybe_round,
    mean,
    number,
    percent,
    skill_columns,
    skill_figures,
    skill_measures,
)
from peftlab.tasks.data import bad_field, text_field
from peftlab.tasks.registry import register

SYSTEM_PROMPT = (  # the reference study's, verbatim
    "You are solving math problems.\n"
    "Read each problem carefully and provide only the final numeric answer.\n"
    "Output your answer inside \\boxed{}, like this: \\boxed{42}\n"
    "Do not include any explanation or intermediate steps."
)
REFERENCE_UNITS = {
    "avg_abs_diff": "raw absolute difference (mean over float()-parsed replies)",
    "accuracy": "percent",
    "format_success_rate": "percent",
}
OPENMATH_REL_TOL = 1e-6  # corrected: |pred - gold| <= 1e-6 * max(1, |gold|)


# --- rows -------------------------------------------------------------------------------------


def number_or_text(value: Any, where: str, row: int, field: str) -> float | str:
    if isinstance(value, bool) or value is None:
        raise bad_field(where, row, field, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise bad_field(where, row, field, f"expected a finite number, got {value!r}")
        return float(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise bad_field(where, row, field, f"expected a number or a non-empty answer string, got {value!r}")


def openmath_reference(record: dict, where: str, row: int) -> dict:
    return {
        "id": f"openmath-{row}",
        "question": text_field(record, "question", where, row),
        "answer": number_or_text(record.get("answer"), where, row, "answer"),
    }


def openmath_hf(record: dict, where: str, row: int) -> dict:
    return {
        "id": f"openmath-{row}",
        "question": text_field(record, "problem", where, row),
        "answer": number_or_text(record.get("expected_answer"), where, row, "expected_answer"),
    }


# --- the reference study's scoring, reproduced (defects included) -----------------------------


def ref_math_item(gold: Any, pred: str) -> tuple[bool, float | None]:
    """(correct, abs diff or None when excluded from the mean), as the study computed it."""
    try:
        gold_num = float(str(gold).strip())
        pred_num = float(pred) if pred is not None and pred != "" else None
    except (TypeError, ValueError):
        return False, None
    correct = pred_num is not None and abs(gold_num - pred_num) < 1e-4
    return correct, (abs(gold_num - pred_num) if pred_num is not None else None)


def reference_openmath(boxed: list[str | None], golds: list, rounded: bool) -> dict:
    total = len(boxed)
    preds = [(b or "").strip() for b in boxed]
    correct = 0
    diffs = []
    for gold, pred in zip(golds, preds):
        ok, diff = ref_math_item(gold, pred)
        correct += ok
        if diff is not None:
            diffs.append(diff)
    acc = correct / total * 100 if total else 0.0
    avg_diff = sum(diffs) / len(diffs) if diffs else None
    return {"avg_abs_diff": maybe_round(avg_diff, 6, rounded), "accuracy": maybe_round(acc, 2, rounded)}


# --- corrected scoring ------------------------------------------------------------------------

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
    s = unwrap_text(str(text)).replace("\u2212", "-")
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


def gold_number(gold: Any) -> float:
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
    text = as_text(reply_or_answer)
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
        extract_boxed(as_text(reply)) is not None and math_equivalent(as_text(reply), gold)
        for reply, gold in zip(items["reply"], items["gold"])
    ]
    return pd.Series(values, index=items.index, dtype=bool, name="math_verify_ok")


def parse_openmath(reply: str) -> tuple[object, bool]:
    boxed = extract_boxed(reply)
    value = None if boxed is None else parse_number(boxed)
    return value, value is not None


# lm-evaluation-harness's "flexible-extract" (gsm8k): the last match of this pattern in the reply.
_FLEX_NUMBER_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def flexible_number(reply: str) -> float | None:
    """The box's number, else the last number in the reply (lm-eval's flexible-extract; "$1,200."
    reads 1200)."""
    value, ok = parse_openmath(reply)
    if ok:
        return value
    for match in reversed(_FLEX_NUMBER_RE.findall(reply)):
        text = (match[0] or match[1]).replace("$", "").replace(",", "").rstrip(".")
        try:
            found = float(text)
        except ValueError:
            continue
        if math.isfinite(found):
            return found
    return None


def flexible_openmath(reply: str, gold) -> tuple[str, float]:
    """Right when the flexible number equals the gold (the exact-match tolerance) or math-verify
    judges the reply's answer equivalent to it."""
    value = flexible_number(reply)
    try:
        target = gold_number(gold)
    except ValueError:
        target = None
    right = value is not None and target is not None and abs(value - target) <= OPENMATH_REL_TOL * max(1.0, abs(target))
    return ("" if value is None else repr(value)), float(right or _reply_equivalent(reply, gold))


def _reply_equivalent(reply: str, gold: Any) -> bool:
    """math-verify reading the reply as it is (its own extraction: the last LaTeX or plain answer)."""
    gold_text = _gold_latex(gold)
    if not reply.strip() or not gold_text:
        return False
    try:
        from math_verify import parse, verify

        timeout = _math_verify_timeout()
        parsed_gold = _math_verify_parse(gold_text, timeout)
        parsed_reply = parse(reply, parsing_timeout=timeout)
        return bool(parsed_gold and parsed_reply and verify(parsed_gold, parsed_reply, timeout_seconds=timeout))
    except ImportError:
        raise
    except Exception:  # math-verify's TimeoutError, sympy errors, recursion limits, ...
        return False


def score_openmath(reply: str, ref_boxed: str | None, value, ok: bool, gold) -> dict:
    ref_pred = (ref_boxed or "").strip()
    boxed = extract_boxed(reply)
    equivalent = boxed is not None and math_equivalent(boxed, gold)
    try:
        gold_num = gold_number(gold)
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
            "ref_score": float(ref_math_item(gold, ref_pred)[0]),
        }
    diff = abs(value - gold_num) if ok else math.nan
    return {
        "parsed": repr(value) if ok else "",
        "parsed_ok": ok,
        "score": float(ok and diff <= OPENMATH_REL_TOL * max(1.0, abs(gold_num))),
        "abs_diff": diff,
        "math_verify_ok": equivalent,
        "ref_parsed": ref_pred,
        "ref_score": float(ref_math_item(gold, ref_pred)[0]),
    }


def summarize_openmath(items: pd.DataFrame, scores: list[float], parsed_ok: list[bool]) -> dict:
    diffs = [float(d) for d, ok in zip(items["abs_diff"], parsed_ok) if ok and not math.isnan(float(d))]
    verified = items["math_verify_ok"] if "math_verify_ok" in items.columns else openmath_math_verify(items)
    verified = [bool(x) for x in verified]
    return {
        "accuracy": mean(scores),
        "mean_abs_diff": mean(diffs),
        "median_abs_diff": float(statistics.median(diffs)) if diffs else None,
        "math_verify_accuracy": mean([float(v) for v in verified]),
        "math_verify_agreement": mean([float(v == (s == 1.0)) for v, s in zip(verified, scores)]),
    }


def format_number(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def openmath_figures(record: dict, scoring_name: str) -> dict:
    """Parse count beside AbsDiff (which averages parsed replies only), the accuracies over
    every item (percent), and the flexible, format and cut figures."""
    return {**_count_figures(record, scoring_name), **skill_figures("openmath")(record, scoring_name)}


def _count_figures(record: dict, scoring_name: str) -> dict:
    metrics = record.get("metrics") or {}
    n = float(record.get("n_items") or "nan")
    if scoring_name == "reference":
        ref = metrics.get("reference") or {}
        # the study's AbsDiff averages float()-parsed boxes; published: the share of replies with a box
        return {
            "openmath_n_parsed": number(ref.get("format_success_rate")) * n / 100,
            "openmath_n": n,
            "openmath_accuracy": number(ref.get("accuracy")),
            "openmath_math_verify": float("nan"),
        }
    corrected = metrics.get("corrected") or {}
    return {
        "openmath_n_parsed": number(corrected.get("parse_rate")) * n,
        "openmath_n": n,
        "openmath_accuracy": 100 * number(corrected.get("accuracy")),
        "openmath_math_verify": 100 * number(corrected.get("math_verify_accuracy")),
        "math_verify_agreement": number(corrected.get("math_verify_agreement")),
    }


register(
    Task(
        name="openmath",
        label="OpenMath",
        prompting=Prompting(
            system_prompt=SYSTEM_PROMPT,
            user_content=lambda row, protocol: row["question"],
            # the reference stored OpenMath answers as floats: "45.0"
            answer=lambda row, protocol: (
                str(row["answer"]) if protocol == "reference" else format_number(row["answer"])
            ),
        ),
        scoring=Scoring(
            answer_kind="number",
            gold=lambda row: row["answer"],
            parse=parse_openmath,
            score_item=score_openmath,
            item_columns={"abs_diff": "float", "math_verify_ok": "bool"},
            summarize=summarize_openmath,
            summary_columns=("abs_diff",),
            reference_metrics=reference_openmath,
            reference_units=REFERENCE_UNITS,
            headline=("mean_abs_diff", False),
            published=("avg_abs_diff",),
            efficacy={"reference": ("avg_abs_diff", 1.0), "corrected": ("mean_abs_diff", 1.0)},
            count_metric=("openmath_accuracy", {"reference": ("accuracy", 0.01), "corrected": ("accuracy", 1.0)}),
            measures=(
                Measure(
                    "openmath_accuracy",
                    "OpenMath exact-match accuracy",
                    "%",
                    {"corrected": percent("score"), "reference": percent("ref_score")},
                    words="accuracy points",
                    short="accuracy %",
                ),
                Measure(
                    "openmath_math_verify",
                    "OpenMath equivalence accuracy (math-verify)",
                    "%",
                    {"corrected": percent("math_verify_ok"), "reference": (None, 100.0)},
                    recompute=openmath_math_verify,
                    words="equivalence points",
                    short="equivalence %",
                ),
                *skill_measures("openmath", "OpenMath"),
            ),
            efficacy_measures=("openmath_flex_accuracy", "openmath_accuracy"),
            flexible=flexible_openmath,
        ),
        data=DataSpec(
            reference_file="OpenMathInstruct-2",
            # OpenMathInstruct-2 ships only a train sample: its first 800 rows train, the rest is held out
            hf_files={"train": ("openmathinstruct2_train.jsonl",), "test": ("openmathinstruct2_train.jsonl",)},
            hf_rows={"train": slice(0, 800), "test": slice(800, None)},
            hub=("nvidia/OpenMathInstruct-2", None, {"train": "train_1M", "test": "train_1M"}),
            builders={"reference": openmath_reference, "hf": openmath_hf},
        ),
        presentation=Presentation(
            column="openmath",
            efficacy_column="openmath_absdiff",
            efficacy_header=("AbsDiff ↓", 2),
            higher_is_better=False,
            efficacy_label="OpenMath mean |diff| ↓",
            table1_extra=(
                Column("openmath_n_parsed", "Parsed", 0, out_of="openmath_n"),  # AbsDiff averages these only
                Column("openmath_n", "Items", 0, shown=False),
                Column("openmath_accuracy", "Acc. % ↑", 1, best_is_max=True),
                Column("openmath_math_verify", "Equiv. % ↑", 1, best_is_max=True),
                *skill_columns("openmath"),
            ),
            table1_figures=openmath_figures,
            record_figures=(
                "openmath_n_parsed",
                "openmath_n",
                "openmath_accuracy",
                "openmath_math_verify",
                "math_verify_agreement",
                *(c.name for c in skill_columns("openmath")),
            ),
        ),
        reference_training_task=True,
    )
)
