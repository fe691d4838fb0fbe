"""SQuAD v2: a question on a passage, answered by a span of it, or unanswerable.

Rows: id, question, context, answers (gold spans; [] = unanswerable). Corrected scoring uses the
official normalisation, EM and token F1 over every gold answer, and reads an abstention sentence
as no answer; the reference replica keeps the study's first-gold-only F1 and its empty-reply
rule. Questions on one passage share a cluster.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections import Counter
from typing import Any

import pandas as pd

from peftlab.tasks.base import DataSpec, Measure, Presentation, Prompting, Scoring, Task
from peftlab.tasks.boxed import extract_boxed, unwrap_text
from peftlab.tasks.common import maybe_round, mean, percent, skill_columns, skill_figures, skill_measures
from peftlab.tasks.data import bad_field, text_field
from peftlab.tasks.registry import register

SYSTEM_PROMPT = (  # the reference study's, verbatim
    "You are answering a question based on a passage.\n"
    "Read the context carefully and provide the exact answer span from the passage.\n"
    "Do not add extra words or explanations.\n"
    "Output your answer inside \\boxed{}, like this: \\boxed{Einstein}"
)
# The corrected protocol says what to write for an unanswerable question.
UNANSWERABLE_HINT = "\nIf the passage does not contain the answer, output \\boxed{unanswerable}."
UNANSWERABLE = "unanswerable"
REFERENCE_UNITS = {
    "EM": "percent",
    "F1": "percent",
    "HasAns_EM": "percent",
    "HasAns_F1": "percent",
    "NoAns_Accuracy": "percent",
    "AvNA_Accuracy": "percent",
    "format_success_rate": "percent",
}


# --- rows -------------------------------------------------------------------------------------


def _check_spans(answers: list[str], context: str, where: str, row: int, field: str) -> None:
    for answer in answers:
        if answer not in context:
            raise bad_field(where, row, field, f"answer {answer!r} is not found in the context")


def squad_reference(record: dict, where: str, row: int) -> dict:
    context = text_field(record, "context", where, row)
    answer = text_field(record, "answer", where, row, allow_empty=True)
    answers = [answer] if answer.strip() else []
    _check_spans(answers, context, where, row, "answer")
    return {
        "id": f"squad-{row}",
        "question": text_field(record, "question", where, row),
        "context": context,
        "answers": answers,
    }


def squad_hf(record: dict, where: str, row: int) -> dict:
    context = text_field(record, "context", where, row)
    answers = record.get("answers")
    if not isinstance(answers, dict) or not isinstance(answers.get("text"), list):
        raise bad_field(where, row, "answers", "expected {'text': [...], 'answer_start': [...]}")
    texts = [str(t) for t in answers["text"]]
    _check_spans(texts, context, where, row, "answers")
    unique = list(dict.fromkeys(texts))  # several annotators often give the same span
    return {
        "id": text_field(record, "id", where, row),
        "question": text_field(record, "question", where, row),
        "context": context,
        "answers": unique,
    }


def passage_cluster(context: str) -> str:
    """A short stable name of a passage (the first 12 hex digits of its SHA-1): questions on one
    passage share it, as they are not independent items."""
    return hashlib.sha1(context.encode("utf-8")).hexdigest()[:12]


# --- the reference study's scoring, reproduced (defects included) -----------------------------

_REF_ARTICLES = {"a", "an", "the"}
_REF_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_REF_EMPTY_ANSWERS = {"", "unanswerable", "unknown", "no answer", "n a", "none", "null"}


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


def _ref_squad_gold(gold: Any) -> str:
    answers = _as_gold_list(gold)
    return answers[0] if answers else ""


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
        "EM": maybe_round(em, 2, rounded),
        "F1": maybe_round(f1, 2, rounded),
        "HasAns_EM": maybe_round(has_em, 2, rounded),
        "HasAns_F1": maybe_round(has_f1, 2, rounded),
        "NoAns_Accuracy": maybe_round(no_acc, 2, rounded),
        "AvNA_Accuracy": maybe_round(avna, 2, rounded),
    }


# --- corrected scoring ------------------------------------------------------------------------

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
    norm = normalize_answer(unwrap_text(text))
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
    return unwrap_text(text).strip(), boxed is not None


def squad_prediction(reply: str) -> tuple[str, bool]:
    text, boxed = _squad_literal(reply)
    return ("" if is_no_answer(text) else text), boxed


def flexible_squad(reply: str, gold) -> tuple[str, float]:
    """The box's text, else the reply's first line (an abstention reads as no answer), scored with
    the official F1 against every gold answer."""
    text = reply.strip()
    boxed = extract_boxed(reply)
    if boxed is None:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
    else:
        text = boxed
    text = unwrap_text(text).strip()
    prediction = "" if is_no_answer(text) else text
    answers, _ = _squad_golds(gold)
    return prediction, max(compute_f1(a, prediction) for a in answers)


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


def summarize_squad(items: pd.DataFrame, scores: list[float], parsed_ok: list[bool]) -> dict:
    has = [bool(x) for x in items["has_answer"]]
    ems = [float(x) for x in items["em"]]
    return {
        "em": mean(ems),
        "f1": mean(scores),
        "has_ans_em": mean([e for e, h in zip(ems, has) if h]),
        "has_ans_f1": mean([s for s, h in zip(scores, has) if h]),
        "no_ans_em": mean([e for e, h in zip(ems, has) if not h]),
        "n_has_ans": sum(has),
        "n_no_ans": len(items) - sum(has),
    }


def squad_user(row: dict, protocol: str) -> str:
    if protocol == "reference":
        return row["question"] + row["context"]  # as the reference code did: no separator
    return f"Passage: {row['context']}\n\nQuestion: {row['question']}"


def squad_answer(row: dict, protocol: str) -> str:
    if row["answers"]:
        return row["answers"][0]
    return "" if protocol == "reference" else UNANSWERABLE


register(
    Task(
        name="squad_v2",
        label="SQuAD v2",
        prompting=Prompting(
            system_prompt=SYSTEM_PROMPT,
            corrected_hint=UNANSWERABLE_HINT,
            user_content=squad_user,
            answer=squad_answer,
        ),
        scoring=Scoring(
            answer_kind="span",
            gold=lambda row: row["answers"],
            parse=squad_prediction,
            score_item=score_squad,
            item_columns={"em": "float", "has_answer": "bool"},
            summarize=summarize_squad,
            summary_columns=("em", "has_answer"),
            reference_metrics=reference_squad,
            reference_units=REFERENCE_UNITS,
            headline=("f1", True),
            published=("EM", "F1", "HasAns_EM", "HasAns_F1", "NoAns_Accuracy", "AvNA_Accuracy"),
            efficacy={"reference": ("F1", 1.0), "corrected": ("f1", 100.0)},
            count_metric=("squad_em", {"reference": ("EM", 0.01), "corrected": ("em", 1.0)}),
            measures=(
                Measure(
                    "squad_f1",
                    "SQuAD v2 F1",
                    "%",
                    {"corrected": percent("score"), "reference": percent("ref_score")},
                    words="F1 points",
                    short="F1 %",
                ),
                Measure(
                    "squad_em",
                    "SQuAD v2 exact match",
                    "%",
                    {"corrected": percent("em"), "reference": (None, 100.0)},
                    words="EM points",
                    short="EM %",
                ),
                *skill_measures("squad", "SQuAD v2", flexible="F1"),
            ),
            efficacy_measures=("squad_flex_f1", "squad_f1", "squad_em"),
            flexible=flexible_squad,
            cluster=lambda row: passage_cluster(row["context"]),
        ),
        data=DataSpec(
            reference_file="squad_v2",
            hf_files={"train": ("squad_v2_train.jsonl",), "test": ("squad_v2_validation.jsonl",)},
            hub=("rajpurkar/squad_v2", None, {"train": "train", "test": "validation"}),
            builders={"reference": squad_reference, "hf": squad_hf},
        ),
        presentation=Presentation(
            column="squad",
            efficacy_column="squad_f1",
            efficacy_header=("F1 ↑", 2),
            higher_is_better=True,
            efficacy_label="SQuAD v2 F1 (%) ↑",
            table1_extra=skill_columns("squad"),
            table1_figures=skill_figures("squad"),
            record_figures=tuple(c.name for c in skill_columns("squad")),
        ),
        reference_training_task=True,
    )
)
