"""ARC (AI2 Reasoning Challenge): multiple choice, four or five options, answered by letter.

Rows: id, question (the stem with the options appended "A. ... B. ..."), labels, answer.
Corrected scoring reads a letter A-E (or 1-5) from the last box; the reference replica keeps the
study's A-D macro-F1 and its defects (gold "1".."4" never correct; the first A-D character of a
longer box).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from peftlab.core.stats import macro_f1
from peftlab.tasks.base import DataSpec, Measure, Presentation, Prompting, Scoring, Task
from peftlab.tasks.boxed import extract_boxed, unwrap_text
from peftlab.tasks.common import class_codes, maybe_round, mean, percent, skill_columns, skill_figures, skill_measures
from peftlab.tasks.data import bad_field, text_field
from peftlab.tasks.registry import register

SYSTEM_PROMPT = (  # the reference study's, verbatim
    "You are taking a multiple-choice test.\n"
    "Each question will have exactly 4 options: A, B, C or D.\n"
    "Read the question and choose the correct answer.\n"
    "Output only the letter of the correct answer inside \\boxed{}, like this: \\boxed{C}"
)
ARC_LETTERS = ("A", "B", "C", "D")  # the reference protocol's classes (and the corrected base classes)
ARC_OPTION_LETTERS = ("A", "B", "C", "D", "E")  # corrected: ARC questions have up to five options
ARC_NUMERIC_LABELS = ("1", "2", "3", "4", "5")
REFERENCE_UNITS = {"macro_f1": "fraction 0..1", "accuracy": "percent", "format_success_rate": "percent"}


# --- rows -------------------------------------------------------------------------------------


def arc_reference(record: dict, where: str, row: int) -> dict:
    question = text_field(record, "question", where, row)
    answer = text_field(record, "answer", where, row).strip()
    labels = ARC_NUMERIC_LABELS if answer in ARC_NUMERIC_LABELS else ARC_OPTION_LETTERS
    # Four options; five when the question lists a fifth ("... D. text E. text"); three when it
    # lists no fourth ("... B. text C. text", a few of the study's questions).
    fifth = re.search(rf"(?:^|\s){labels[3]}\.\s.*\s{labels[4]}\.\s", question, flags=re.DOTALL)
    fourth = re.search(rf"\s{labels[2]}\.\s.*\s{labels[3]}\.\s", question, flags=re.DOTALL)
    labels = labels if fifth else labels[:4] if fourth else labels[:3]
    if answer not in labels:
        raise bad_field(where, row, "answer", f"{answer!r} is not among the labels {', '.join(labels)}")
    return {
        "id": text_field(record, "title", where, row),
        "question": question,
        "labels": list(labels),
        "answer": answer,
    }


def arc_hf(record: dict, where: str, row: int) -> dict:
    stem = text_field(record, "question", where, row)
    choices = record.get("choices")
    if (
        not isinstance(choices, dict)
        or not isinstance(choices.get("label"), list)
        or not isinstance(choices.get("text"), list)
        or len(choices["label"]) != len(choices["text"])
        or not choices["label"]
    ):
        raise bad_field(where, row, "choices", "expected {'text': [...], 'label': [...]} of equal, non-zero length")
    labels = [str(label) for label in choices["label"]]
    answer = text_field(record, "answerKey", where, row).strip()
    if answer not in labels:
        raise bad_field(where, row, "answerKey", f"{answer!r} is not among the labels {', '.join(labels)}")
    # The reference study's layout: the stem with "A. text B. text ..." appended.
    options = " ".join(f"{label}. {text}" for label, text in zip(labels, choices["text"]))
    return {
        "id": text_field(record, "id", where, row),
        "question": f"{stem} {options}",
        "labels": labels,
        "answer": answer,
    }


# --- the reference study's scoring, reproduced (defects included) -----------------------------


def ref_normalize_arc_option(s: str | None) -> str | None:
    if s is None:
        return None
    t = s.strip().upper()
    if len(t) > 1:
        for ch in t:
            if ch in {"A", "B", "C", "D"}:
                return ch
        return None
    return t if t in {"A", "B", "C", "D"} else None


def ref_arc_gold(gold: Any) -> str | None:
    return ref_normalize_arc_option(str(gold))


def reference_arc(boxed: list[str | None], golds: list, rounded: bool) -> dict:
    total = len(boxed)
    gold_opts = [ref_arc_gold(g) for g in golds]
    preds = [ref_normalize_arc_option(b) for b in boxed]
    correct = sum(p is not None and t == p for t, p in zip(gold_opts, preds))
    # the study's 4 x 4 confusion matrix counts only pairs whose gold and prediction are both A-D
    f1 = macro_f1(gold_opts, preds, ARC_LETTERS, fixed_classes=True)
    acc = (correct / total * 100) if total else 0.0
    return {"macro_f1": maybe_round(f1, 4, rounded), "accuracy": maybe_round(acc, 2, rounded)}


# --- corrected scoring ------------------------------------------------------------------------

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


def gold_letter(gold: Any) -> str:
    g = str(gold).strip().upper()
    g = _DIGIT_TO_LETTER.get(g, g)
    if g not in ARC_OPTION_LETTERS:
        raise ValueError(f"ARC gold label {gold!r} is not one of A-E or 1-5")
    return g


def parse_letter(content: str) -> str | None:
    """A letter A-E from boxed content, or None when it is not one unambiguous option.

    Accepts ``C``, ``(C)``, ``C.``, ``C) text``, ``C: text``, ``C (the sun)``, ``Option C``,
    ``The answer is C`` (any case) and the digits 1-5 (mapped to A-E); an explanation may
    name other options (``D. Both (A) and (B)``). A letter directly followed by another
    option (``A or B``, ``(A) or (B)``, ``A/B``, ``A, B``) and free text are unparsed.
    """
    s = unwrap_text(content).replace("$", "").replace("*", "").strip()
    m = _ARC_RE.match(s)
    if m is None:
        return None
    letter = m.group("p") or m.group("b")
    rest = m.group("prest") or m.group("brest") or ""
    if _ARC_AMBIGUOUS_RE.match(rest.lstrip(".):")):
        return None
    letter = letter.upper()
    return _DIGIT_TO_LETTER.get(letter, letter)


def parse_arc(reply: str) -> tuple[object, bool]:
    boxed = extract_boxed(reply)
    value = None if boxed is None else parse_letter(boxed)
    return value, value is not None


# The flexible reading: a reply that opens with an option ("A. the sun", "(B)", "C)") or states
# one ("The correct answer is D"), whether or not it wrote a box. Capital letters only: "A student..."
# opens with the article, not an option, so a letter must be followed by ".", ")" or ":" or stand alone.
_LEADING_OPTION_RE = re.compile(r"^\s*(?:\(([A-E1-5])\)|([A-E1-5])(?:[.):]|\s*$))", flags=re.MULTILINE)
_STATED_OPTION_RE = re.compile(
    r"\b(?:answer|option|choice)\s*(?:is|would be|:)\s*:?\s*(?:option\s+)?\(?([A-E1-5])(?![A-Za-z0-9])",
    flags=re.IGNORECASE,
)


def flexible_letter(reply: str) -> str | None:
    """The option a reader would take from the reply: the box's, else a leading option, else the
    first "answer is X"."""
    value, ok = parse_arc(reply)
    if ok:
        return value
    first_line = next((line for line in reply.splitlines() if line.strip()), "")
    m = _LEADING_OPTION_RE.match(first_line) or _STATED_OPTION_RE.search(reply)
    if m is None:
        return None
    letter = next(g for g in m.groups() if g).upper()
    return _DIGIT_TO_LETTER.get(letter, letter)


def flexible_arc(reply: str, gold) -> tuple[str, float]:
    letter = flexible_letter(reply)
    return letter or "", float(letter == gold_letter(gold))


# --- log-likelihood multiple choice (lm-evaluation-harness's arc_easy / arc_challenge) ------------

# lm-eval's tasks/arc: doc_to_text "Question: {{question}}\nAnswer:", doc_to_choice the option texts,
# each scored as the continuation " " + text; zero-shot, no chat template, no system prompt.
LOGLIK_PROMPT = "Question: {question}\nAnswer:"


def arc_options(row: dict) -> tuple[str, list[str]]:
    """(question stem, option texts) of a row, whose question is the stem with "A. text B. text ..."
    appended (`arc_hf` / `arc_reference`). A row with `stem` and `options` is taken as it is."""
    if "stem" in row and "options" in row:
        return row["stem"], list(row["options"])
    text, labels = row["question"], [str(label) for label in row["labels"]]
    options: list[str] = []
    end = len(text)
    # From the last label back: a stem is long free text that may hold "A. " itself (initials,
    # lists), while an option is short, so the last marker before the next one is the label.
    for label in reversed(labels):
        markers = list(re.finditer(rf"(?:^|\s){re.escape(label)}\.\s", text[:end]))
        if not markers:
            raise ValueError(f"ARC row {row.get('id')!r}: no option marker '{label}. ' in {text!r}")
        options.insert(0, text[markers[-1].end() : end].strip())
        end = markers[-1].start()
    return text[:end].strip(), options


def multiple_choice(row: dict) -> tuple[str, list[str]]:
    stem, options = arc_options(row)
    return LOGLIK_PROMPT.format(question=stem), options


def chance(row: dict) -> float:
    return 1.0 / len(row["labels"])


def score_arc(reply: str, ref_boxed: str | None, value, ok: bool, gold) -> dict:
    letter = gold_letter(gold)
    ref_pred = ref_normalize_arc_option(ref_boxed)
    return {
        "parsed": value or "",
        "parsed_ok": ok,
        "score": float(value == letter),
        "gold_letter": letter,
        "ref_parsed": ref_pred or "",
        "ref_score": float(ref_pred is not None and ref_pred == ref_arc_gold(gold)),
    }


def corrected_macro_f1(gold_letters: Sequence[str], preds: Sequence[str | None]) -> float:
    """Macro-F1 over A-D, plus E when E occurs in gold or predictions.

    An unparsed prediction (None) is a miss of its gold class and a prediction of no class; a
    class predicted but never gold has F1 0; per-class precision/recall/F1 are 0 when their
    denominator is 0. With A-D only the classes, and so the value, are those of the 4-option
    matrix.
    """
    return macro_f1(gold_letters, preds, ARC_OPTION_LETTERS, fixed_classes=False)


def summarize_arc(items: pd.DataFrame, scores: list[float], parsed_ok: list[bool]) -> dict:
    preds = [p if ok else None for p, ok in zip(items["parsed"], parsed_ok)]
    return {
        "accuracy": mean(scores),
        "macro_f1": corrected_macro_f1(list(items["gold_letter"]), preds) if len(items) else None,
    }


def arc_classes(frame, scoring_name: str):
    """Gold and predicted ARC classes per item, read as the scoring reads them (None: the
    items file lacks what that scoring needs)."""
    if scoring_name == "reference":
        if "gold" not in frame.columns or not frame["gold"].notna().any() or "ref_parsed" not in frame.columns:
            return None
        gold, pred = frame["gold"].map(ref_arc_gold), frame["ref_parsed"].map(lambda p: p or None)
    else:
        if (
            "gold_letter" not in frame.columns
            or not frame["gold_letter"].notna().any()
            or "parsed" not in frame.columns
        ):
            return None
        gold, pred = frame["gold_letter"], frame["parsed"].where(frame["parsed_ok"].astype(bool))
    labels = ARC_OPTION_LETTERS
    return pd.DataFrame({"g": class_codes(gold, labels), "p": class_codes(pred, labels)}, index=frame.index)


register(
    Task(
        name="arc",
        label="ARC",
        prompting=Prompting(
            system_prompt=SYSTEM_PROMPT,
            user_content=lambda row, protocol: row["question"],
            answer=lambda row, protocol: str(row["answer"]),
        ),
        scoring=Scoring(
            answer_kind="choice",
            gold=lambda row: row["answer"],
            parse=parse_arc,
            score_item=score_arc,
            item_columns={"gold_letter": "object"},
            summarize=summarize_arc,
            summary_columns=("parsed", "gold_letter"),
            reference_metrics=reference_arc,
            reference_units=REFERENCE_UNITS,
            headline=("macro_f1", True),
            published=("macro_f1",),
            efficacy={"reference": ("macro_f1", 1.0), "corrected": ("macro_f1", 1.0)},
            count_metric=("arc_accuracy", {"reference": ("accuracy", 0.01), "corrected": ("accuracy", 1.0)}),
            measures=(
                Measure(
                    "arc_macro_f1",
                    "ARC macro-F1",
                    "",
                    statistic="macro_f1",
                    digits=3,
                    words="macro-F1",
                    short="macro-F1",
                    class_labels={"corrected": ARC_OPTION_LETTERS, "reference": ARC_LETTERS},
                    classes=arc_classes,
                ),
                Measure(
                    "arc_accuracy",
                    "ARC accuracy",
                    "%",
                    {"corrected": percent("score"), "reference": percent("ref_score")},
                    words="accuracy points",
                    short="accuracy %",
                    chance="chance",
                ),
                *skill_measures("arc", "ARC", loglik=True),
            ),
            efficacy_measures=("arc_loglik_acc_norm", "arc_flex_accuracy", "arc_macro_f1", "arc_accuracy"),
            flexible=flexible_arc,
            multiple_choice=multiple_choice,
            chance=chance,
        ),
        data=DataSpec(
            reference_file="ai2_arc",
            hf_files={"train": ("arc_easy_train.jsonl",), "test": ("arc_easy_test.jsonl",)},
            hub=("allenai/ai2_arc", "ARC-Challenge", {"train": "train", "test": "test"}),
            builders={"reference": arc_reference, "hf": arc_hf},
        ),
        presentation=Presentation(
            column="arc",
            efficacy_column="arc_f1",
            efficacy_header=("F1 ↑", 4),
            higher_is_better=True,
            efficacy_label="ARC macro-F1 ↑",
            table1_extra=skill_columns("arc", loglik=True),
            table1_figures=skill_figures("arc", loglik=True),
            record_figures=tuple(c.name for c in skill_columns("arc", loglik=True)),
        ),
    )
)
