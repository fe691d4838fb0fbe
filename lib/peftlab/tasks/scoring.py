"""Scoring of model replies, under two protocols side by side: what every task does alike.

Each task module holds its own parser, per-item scorer, summary and reference replica; this
module runs them for a task named in the registry.

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

Public API: ``parse_reply``, ``score_items``, ``summarize``, ``reference_metrics``. Gold formats: ARC a label ``"A"``..``"E"`` or ``"1"``..``"5"`` (the
reference protocol knows A-D only); OpenMath a number or a string such as ``"\\frac{3}{4}"``; SQuAD v2 a list
of answer strings (empty list = unanswerable).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from peftlab.tasks.boxed import reference_extract_boxed
from peftlab.tasks.common import as_text, check_lengths, maybe_round, mean
from peftlab.tasks.registry import get_task


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
    spec = get_task(task).scoring
    check_lengths(replies, golds)
    replies = [as_text(r) for r in replies]
    boxed = [reference_extract_boxed(r) for r in replies]
    total = len(replies)
    format_rate = (sum(b is not None for b in boxed) / total * 100) if total else 0.0
    metrics = spec.reference_metrics(boxed, list(golds), rounded)
    return {**metrics, "format_success_rate": maybe_round(format_rate, 2, rounded)}


def parse_reply(task: str, reply: str) -> tuple[object, bool]:
    """The corrected protocol's reading of one reply: ``(value, parsed_ok)``.

    ``arc``: a letter A-E or None. ``openmath``: a float or None. ``squad_v2``: the
    prediction string used for scoring (``""`` = no answer), even when ``parsed_ok`` is
    False; it is the boxed content, or the whole reply (stripped) when there is no box, and an
    abstention (``is_no_answer``) becomes ``""``. ``parsed_ok`` is True when a box
    was found and its content parsed for the task (for SQuAD: when a box was found).
    """
    return get_task(task).scoring.parse(as_text(reply))


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
    spec = get_task(task).scoring
    check_lengths(replies, golds)
    rows = []
    for raw_reply, gold in zip(replies, golds):
        reply = as_text(raw_reply)
        value, ok = spec.parse(reply)
        row = spec.score_item(reply, reference_extract_boxed(reply), value, ok, gold)
        # Format is a measure of its own: the reply gave its answer as the protocol asks.
        row["format_ok"] = ok
        if spec.flexible is not None:
            row["flex_parsed"], row["flex_score"] = spec.flexible(reply, gold)
        rows.append(row)
    extra = dict(spec.item_columns)
    flexible = {"flex_parsed": "object", "flex_score": "float"} if spec.flexible is not None else {}
    columns = ["parsed", "parsed_ok", "score", *extra, "format_ok", *flexible, "ref_parsed", "ref_score"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"parsed_ok": bool, "score": float, "ref_score": float, "format_ok": bool, **extra, **flexible})


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

    Every task's corrected entry also has, from the columns the items have: ``flexible`` (the
    flexible reading's mean score), ``loglik_acc`` and ``loglik_acc_norm`` (log-likelihood
    multiple choice), ``format_rate`` (replies in the answer format), ``cut_rate`` (replies that
    reached ``max_new_tokens``) and ``chance`` (a blind guess's expected score).

    ``reference``: ``reference_metrics(task, items.reply, items.gold)`` (study keys and units).
    ``headline``: ``{"name", "value", "higher_is_better"}`` from the corrected entry (the
    task's registry entry names it: arc ``macro_f1``, openmath ``mean_abs_diff`` (lower is
    better), squad_v2 ``f1``).
    """
    spec = get_task(task).scoring
    required = ("reply", "gold", "parsed_ok", "score", *spec.summary_columns)
    missing = [c for c in required if c not in items.columns]
    if missing:
        raise ValueError(
            f"items for task {task!r} lack the columns {missing}; "
            "use score_items' frame plus the columns 'reply' and 'gold'"
        )
    parsed_ok = [bool(x) for x in items["parsed_ok"]]
    common = {"parse_rate": mean([float(x) for x in parsed_ok]), "n": len(items), **_skill_and_format(items)}
    corrected = {**spec.summarize(items, [float(x) for x in items["score"]], parsed_ok), **common}
    reference = reference_metrics(task, list(items["reply"]), list(items["gold"]), rounded=rounded_reference)
    name, higher = spec.headline
    return {
        "corrected": corrected,
        "reference": reference,
        "headline": {"name": name, "value": corrected[name], "higher_is_better": higher},
    }


# Item column -> summary key: the measures of skill without a format (flexible reading, log-likelihood
# choice), the format measure, the share of replies cut at max_new_tokens, and chance.
_SHARES = {
    "flex_score": "flexible",
    "ll_acc": "loglik_acc",
    "ll_acc_norm": "loglik_acc_norm",
    "format_ok": "format_rate",
    "hit_max_new_tokens": "cut_rate",
    "chance": "chance",
}


def _skill_and_format(items: pd.DataFrame) -> dict:
    """The mean of each of `_SHARES`' columns the items have (items scored before a column existed
    lack it; `format_ok` is then the corrected parse)."""
    out = {}
    for column, key in _SHARES.items():
        values = items[column] if column in items.columns else (items["parsed_ok"] if column == "format_ok" else None)
        if values is not None and values.notna().any():
            out[key] = mean([float(v) for v in values.dropna()])
    return out
