"""Golden cases for the two scoring protocols; every expected number is worked out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from peftlab import config
from peftlab.tasks import arc, openmath, scoring, squad_v2
from peftlab.tasks.boxed import extract_boxed, reference_extract_boxed
from peftlab.tasks.openmath import parse_number
from peftlab.tasks.registry import TASKS
from peftlab.tasks.scoring import parse_reply, reference_metrics, score_items, summarize
from peftlab.tasks.squad_v2 import normalize_answer

approx = pytest.approx


def scored(task, replies, golds):
    """score_items' frame with the reply and gold columns summarize reads, as evaluation adds them."""
    items = score_items(task, replies, golds)
    items.insert(0, "gold", pd.Series(list(golds), index=items.index, dtype=object))
    items.insert(0, "reply", pd.Series(list(replies), index=items.index, dtype=object))
    return items


# --- API guards ---------------------------------------------------------------------


def test_tasks_match_config():
    assert tuple(TASKS) == config.TASKS
    assert {"arc", "openmath", "squad_v2"} <= set(TASKS)  # the reference study's tasks


@pytest.mark.parametrize(
    "call",
    [
        lambda: parse_reply("bogus", "x"),
        lambda: score_items("bogus", ["x"], ["A"]),
        lambda: reference_metrics("bogus", ["x"], ["A"]),
        lambda: summarize("bogus", pd.DataFrame()),
    ],
)
def test_unknown_task_names_task_and_allowed(call):
    with pytest.raises(ValueError, match="'bogus'.*" + ", ".join(TASKS)):
        call()


def test_length_mismatch():
    with pytest.raises(ValueError, match="2 replies, 1 golds"):
        score_items("arc", ["\\boxed{A}", "\\boxed{B}"], ["A"])
    with pytest.raises(ValueError, match="length"):
        reference_metrics("openmath", ["\\boxed{1}"], [1.0, 2.0])


def test_summarize_requires_score_items_columns():
    with pytest.raises(ValueError, match="gold_letter"):
        summarize("arc", pd.DataFrame({"reply": [], "gold": [], "parsed": [], "parsed_ok": [], "score": []}))
    with pytest.raises(ValueError, match="'reply', 'gold'"):
        summarize("arc", score_items("arc", ["\\boxed{A}"], ["A"]))


# --- extraction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "corrected", "reference"),
    [
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "\\frac{1"),
        ("first \\boxed{3} then \\boxed{5}", "5", "3"),
        ("\\fbox{7}", "7", None),
        ("\\boxed{ 42 }", "42", "42"),
        ("\\boxed {x}", "x", None),
        ("\\boxed{\\boxed{5}}", "5", "\\boxed{5"),
        ("\\boxed{4} and a cut-off \\boxed{5", "4", "4"),
        ("\\boxed{}", "", ""),
        ("no box at all", None, None),
    ],
)
def test_extract_boxed(text, corrected, reference):
    assert extract_boxed(text) == corrected
    assert reference_extract_boxed(text) == reference


# --- ARC ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "letter"),
    [
        ("C", "C"),
        ("c", "C"),
        ("(C)", "C"),
        ("C.", "C"),
        ("C) photosynthesis", "C"),
        ("C: photosynthesis", "C"),
        ("(C) photosynthesis", "C"),
        ("Option C", "C"),
        ("The answer is C", "C"),
        ("Answer: C", "C"),
        ("\\text{C}", "C"),
        ("3", "C"),
        ("(1)", "A"),
        ("E", "E"),
        ("(E)", "E"),
        ("5", "E"),
        ("C (the sun)", "C"),
        ("C (the sun).", "C"),
        ("D. Both (A) and (B)", "D"),
        ("B) because plants need light", "B"),
        ("C) and a plant needs water", "C"),
        ("A or B", None),
        ("(A) or (B)", None),
        ("A and B", None),
        ("A/B", None),
        ("A, B", None),
        ("A) or B)", None),
        ("(A), (B)", None),
        ("C (D)", None),
        ("A plant (a producer)", None),
        ("F", None),
        ("6", None),
        ("photosynthesis", None),
        ("", None),
    ],
)
def test_arc_parse(content, letter):
    assert parse_reply("arc", f"Reasoning... \\boxed{{{content}}}") == (letter, letter is not None)


def test_arc_without_box_is_unparsed():
    assert parse_reply("arc", "The answer is C") == (None, False)


def test_arc_reference_reads_first_letter_of_words():
    # The study's normalize_arc_option takes the first A-D character: "ANSWER" gives A.
    items = scored("arc", ["\\boxed{The answer is B}"], ["B"])
    assert items.loc[0, "parsed"] == "B" and items.loc[0, "score"] == 1.0
    assert items.loc[0, "ref_parsed"] == "A" and items.loc[0, "ref_score"] == 0.0


def test_arc_numeric_gold_labels():
    items = scored("arc", ["\\boxed{B}", "\\boxed{2}", "\\boxed{C}"], ["2", "2", "C"])
    assert list(items["gold_letter"]) == ["B", "B", "C"]
    assert list(items["score"]) == [1.0, 1.0, 1.0]
    # Reference: gold "2" becomes None, never correct; the digit reply is not an option either.
    assert list(items["ref_score"]) == [0.0, 0.0, 1.0]
    assert list(items["ref_parsed"]) == ["B", "", "C"]
    s = summarize("arc", items)
    # corrected: B has tp=2 (p=r=1), C tp=1 (p=r=1), A and D 0 -> (1 + 1) / 4
    assert s["corrected"] == {
        "accuracy": 1.0,
        "macro_f1": 0.5,
        "parse_rate": 1.0,
        "n": 3,
        "flexible": 1.0,
        "format_rate": 1.0,
    }
    # reference: only the (C, C) pair enters the matrix -> C f1 = 1, others 0 -> 1/4; 1 of 3 correct
    assert s["reference"] == {"macro_f1": 0.25, "accuracy": 33.33, "format_success_rate": 100.0}


def test_arc_invalid_gold():
    with pytest.raises(ValueError, match="'F'.*A-E or 1-5"):
        score_items("arc", ["\\boxed{A}"], ["F"])


def test_arc_fifth_option_gold_and_reply():
    replies = ["\\boxed{E}", "\\boxed{5}", "\\boxed{A}", "\\boxed{E}", "no box"]
    golds = ["E", "5", "E", "B", "A"]
    items = scored("arc", replies, golds)
    assert list(items["gold_letter"]) == ["E", "E", "E", "B", "A"]
    assert list(items["parsed"]) == ["E", "E", "A", "E", ""]
    assert list(items["score"]) == [1.0, 1.0, 0.0, 0.0, 0.0]
    # reference: gold E/5 become None; an E reply is no option -> nothing correct
    assert list(items["ref_score"]) == [0.0] * 5
    s = summarize("arc", items)
    # E: tp=2 fp=1 (B->E) fn=1 (E->A) -> p=r=2/3, f1 2/3; A: tp=0 -> 0; B: fn=1 -> 0; C, D 0
    # -> classes A-D plus E: (2/3) / 5
    assert s["corrected"]["macro_f1"] == approx(2 / 15)
    assert s["corrected"]["accuracy"] == 0.4


def test_arc_predicted_e_without_gold_support_is_a_fifth_class():
    items = scored("arc", ["\\boxed{A}", "\\boxed{E}"], ["A", "B"])
    # A f1 1; B fn=1 -> 0; C, D 0; E predicted, no gold -> 0 -> 1/5
    assert summarize("arc", items)["corrected"]["macro_f1"] == approx(1 / 5)


@pytest.mark.parametrize(
    ("golds", "preds"),
    [
        (["A", "A", "B", "B"], ["A", None, "B", "A"]),
        (["B", "B", "C"], ["B", "B", "C"]),
        (["A", "B", "C", "D", "D"], ["D", "B", None, "D", "C"]),
    ],
)
def test_arc_macro_f1_over_a_to_d_is_the_4_class_value(golds, preds):
    """Without E the classes are A-D: the same value as the fixed 4x5 confusion matrix."""
    cols = {c: i for i, c in enumerate("ABCD")}
    cm = [[0] * 5 for _ in range(4)]
    for g, p in zip(golds, preds):
        cm[cols[g]][cols[p] if p is not None else 4] += 1
    f1s = []
    for i in range(4):
        tp, fp, fn = cm[i][i], sum(cm[r][i] for r in range(4)) - cm[i][i], sum(cm[i]) - cm[i][i]
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    assert arc.corrected_macro_f1(golds, preds) == approx(sum(f1s) / 4)


def test_arc_unparsed_counts_in_corrected_macro_f1_but_is_dropped_by_reference():
    replies = ["\\boxed{A}", "I am not sure.", "\\boxed{B}", "\\boxed{A}"]
    golds = ["A", "A", "B", "B"]
    items = scored("arc", replies, golds)
    assert list(items["parsed"]) == ["A", "", "B", "A"]
    assert list(items["parsed_ok"]) == [True, False, True, True]
    s = summarize("arc", items)
    # corrected: A tp=1 fp=1 (B->A) fn=1 (unparsed) -> f1 1/2; B tp=1 fp=0 fn=1 -> p=1 r=1/2 f1 2/3;
    # C, D 0 -> macro (1/2 + 2/3) / 4 = 7/24
    assert s["corrected"]["macro_f1"] == approx(7 / 24)
    assert s["corrected"]["accuracy"] == 0.5
    assert s["corrected"]["parse_rate"] == 0.75
    assert s["corrected"]["n"] == 4
    # reference: (A, None) dropped -> A tp=1 fp=1 fn=0 -> p=1/2 r=1 f1 2/3; B f1 2/3 -> macro 1/3
    assert s["reference"] == {"macro_f1": 0.3333, "accuracy": 50.0, "format_success_rate": 75.0}
    raw = reference_metrics("arc", replies, golds, rounded=False)
    assert raw["macro_f1"] == approx(1 / 3)
    assert s["headline"] == {"name": "macro_f1", "value": approx(7 / 24), "higher_is_better": True}


# --- OpenMath -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("42", 42.0),
        ("-7", -7.0),
        ("0.125", 0.125),
        ("1,234", 1234.0),
        ("1,234,567.5", 1234567.5),
        ("\\$1,000", 1000.0),
        ("$12$", 12.0),
        ("\\frac{3}{4}", 0.75),
        ("\\dfrac{3}{4}", 0.75),
        ("-\\frac{1}{2}", -0.5),
        ("\\frac{-1}{2}", -0.5),
        ("3/4", 0.75),
        ("1.5e3", 1500.0),
        ("1.5 \\times 10^{3}", 1500.0),
        ("2 \\times 10^{-2}", 0.02),
        ("50\\%", 50.0),
        ("45 granola bars", 45.0),
        ("\\text{45 granola bars}", 45.0),
        ("12 \\text{ cm}", 12.0),
        ("1\\,234", 1234.0),
        ("90^\\circ", 90.0),
        ("x = 7", 7.0),
        ("x", None),
        ("\\sqrt{2}", None),
        ("2\\pi", None),
        ("2^{10}", None),
        ("1, 2", None),
        ("5 or 6", None),
        ("\\frac{1}{0}", None),
    ],
)
def test_openmath_parse(content, value):
    parsed, ok = parse_reply("openmath", f"So the answer is \\boxed{{{content}}}.")
    assert ok is (value is not None)
    assert parsed == (approx(value) if value is not None else None)


@pytest.mark.parametrize(
    "content",
    [
        "1.5 million",
        "3 x 4",
        "3 \\times 4",
        "3 \\cdot 4",
        "2 pi",
        "2\\pi",
        "2 π",
        "2π",
        "5!",
        "12 feet 6 inches",
        "3 thousand",
        "2 dozen",
        "2 dozen eggs",
        "3 hundred apples",
        "10^3",
        "10**3",
        "2 e",
        "3x",
        "4 + 1",
        "4 - 1",
        "4 * 2",
        "4 × 2",
        "8 apples / 2",
        "5 = x",
        "5 apples + 3 pears",
        "2 and a half",
        "5 or six",
        "5 cm^2",
    ],
)
def test_openmath_number_words_and_operators_after_the_number_are_unparsed(content):
    assert parse_number(content) is None
    assert parse_reply("openmath", f"\\boxed{{{content}}}") == (None, False)


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("45 granola bars", 45.0),
        ("$1,234", 1234.0),
        ("\\frac{3}{4}", 0.75),
        ("50\\%", 50.0),
        ("x = 5", 5.0),
        ("1.5 \\times 10^{3}", 1500.0),
        ("5.", 5.0),
        ("7 cm", 7.0),
        ("\\text{5 apples}", 5.0),
        ("12 meters per second", 12.0),
        ("3 five-year-olds", 3.0),
        ("20 dollars.", 20.0),
        ("60 miles, roughly", 60.0),
    ],
)
def test_openmath_units_and_words_after_the_number_still_parse(content, value):
    assert parse_number(content) == approx(value)


def test_openmath_no_box_is_unparsed():
    assert parse_reply("openmath", "The answer is 42") == (None, False)


def test_openmath_gold_string_and_bad_gold():
    assert parse_number("\\frac{3}{4}") == 0.75
    items = scored("openmath", ["\\boxed{0.75}"], ["\\frac{3}{4}"])
    assert items.loc[0, "score"] == 1.0 and items.loc[0, "abs_diff"] == 0.0
    # a gold that is no number is scored by equivalence (never a crash that loses the run)
    word = score_items("openmath", ["\\boxed{7}"], ["seven"])
    assert word.loc[0, "score"] == 0.0 and word.loc[0, "parsed_ok"]


def test_openmath_tolerances():
    replies = ["\\boxed{0.85705}", "\\boxed{1000000.5}", "\\boxed{0.50001}", "\\boxed{1,234}"]
    golds = [0.857, 1e6, 0.5, 1234.0]
    items = scored("openmath", replies, golds)
    # corrected: |d| <= 1e-6 * max(1, |gold|): 5e-5 > 1e-6; 0.5 <= 1; 1e-5 > 1e-6; exact
    assert list(items["score"]) == [0.0, 1.0, 0.0, 1.0]
    # reference: |d| < 1e-4: 5e-5 yes; 0.5 no; 1e-5 yes; "1,234" fails float()
    assert list(items["ref_score"]) == [1.0, 0.0, 1.0, 0.0]
    assert list(items["parsed"]) == ["0.85705", "1000000.5", "0.50001", "1234.0"]


def test_openmath_mean_vs_median_with_outlier():
    replies = ["\\boxed{10}", "\\boxed{12}", "\\boxed{1010}", "I don't know."]
    items = scored("openmath", replies, [10.0, 10.0, 10.0, 10.0])
    assert list(items["abs_diff"][:3]) == [0.0, 2.0, 1000.0] and math.isnan(items["abs_diff"][3])
    assert list(items["parsed"]) == ["10.0", "12.0", "1010.0", ""]
    s = summarize("openmath", items)
    # diffs 0, 2, 1000: mean 1002/3 = 334, median 2; 1 of 4 correct; 3 of 4 parsed
    assert s["corrected"] == {
        "accuracy": 0.25,
        "mean_abs_diff": 334.0,
        "median_abs_diff": 2.0,
        "math_verify_accuracy": 0.25,
        "math_verify_agreement": 1.0,
        "parse_rate": 0.75,
        "n": 4,
        "flexible": 0.25,  # "I don't know." has no number
        "format_rate": 0.75,
    }
    assert s["reference"] == {"avg_abs_diff": 334.0, "accuracy": 25.0, "format_success_rate": 75.0}
    assert s["headline"] == {"name": "mean_abs_diff", "value": 334.0, "higher_is_better": False}


def test_openmath_reference_avg_excludes_unparsed():
    replies = ["\\boxed{2}", "\\boxed{\\frac{1}{2}}", "\\boxed{abc}", "nothing boxed"]
    items = scored("openmath", replies, [1.0, 2.0, 3.0, 4.0])
    assert list(items["ref_parsed"]) == ["2", "\\frac{1", "abc", ""]
    s = summarize("openmath", items)
    # reference: only "2" passes float() -> |1 - 2| = 1; nothing correct; 3 of 4 boxed
    assert s["reference"] == {"avg_abs_diff": 1.0, "accuracy": 0.0, "format_success_rate": 75.0}
    # corrected: 2 -> 1, \frac{1}{2} -> |2 - 0.5| = 1.5; mean = median = 1.25; 2 of 4 parsed
    assert s["corrected"] == {
        "accuracy": 0.0,
        "mean_abs_diff": 1.25,
        "median_abs_diff": 1.25,
        "math_verify_accuracy": 0.0,
        "math_verify_agreement": 1.0,
        "parse_rate": 0.5,
        "n": 4,
        "flexible": 0.0,
        "format_rate": 0.5,
    }


def test_openmath_nothing_parsed():
    assert reference_metrics("openmath", ["\\boxed{abc}"], [1.0])["avg_abs_diff"] is None
    assert reference_metrics("openmath", ["no box"], [1.0])["avg_abs_diff"] is None
    s = summarize("openmath", scored("openmath", ["\\boxed{abc}"], [1.0]))
    assert s["corrected"]["mean_abs_diff"] is None and s["corrected"]["median_abs_diff"] is None
    assert s["headline"]["value"] is None


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("\\frac{1}{2}", 0.5),
        ("0.5", "\\frac{1}{2}"),
        ("2^{10}", 1024.0),
        ("1,024", 1024),
        ("\\$1,234", "1234"),
        ("The answer is \\boxed{\\dfrac{3}{4}}.", "0.75"),
    ],
)
def test_math_equivalent(answer, gold):
    assert openmath.math_equivalent(answer, gold)


@pytest.mark.parametrize(("answer", "gold"), [("3", 4.0), ("\\frac{1}{3}", 0.5), ("", 1.0), ("\\boxed{}", 1.0)])
def test_math_not_equivalent(answer, gold):
    assert not openmath.math_equivalent(answer, gold)


def test_math_equivalent_in_a_thread_and_on_errors(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(openmath.math_equivalent, "\\boxed{2^{10}}", 1024).result() is True

    def boom(*args, **kwargs):
        raise TimeoutError("too slow")

    monkeypatch.setattr(openmath, "_math_verify_parse", boom)
    assert openmath.math_equivalent("\\boxed{1}", 1) is False


def test_openmath_math_verify_column_and_summary():
    replies = ["\\boxed{\\frac{1}{2}}", "\\boxed{2^{10}}", "\\boxed{1,024}", "\\boxed{7}", "1024", "\\boxed{3}"]
    golds = [0.5, 1024.0, 1024.0, 8.0, 1024.0, 3.0]
    items = scored("openmath", replies, golds)
    assert items["math_verify_ok"].dtype == bool
    # an unboxed reply is False even when its text is the gold
    assert list(items["math_verify_ok"]) == [True, True, True, False, False, True]
    assert list(items["score"]) == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]  # 2^{10} does not parse as a number
    assert openmath.openmath_math_verify(items).tolist() == items["math_verify_ok"].tolist()
    c = summarize("openmath", items)["corrected"]
    assert c["math_verify_accuracy"] == approx(4 / 6)
    assert c["math_verify_agreement"] == approx(5 / 6)  # all but 2^{10}
    # items written before the column existed: summarize computes it from reply and gold
    assert summarize("openmath", items.drop(columns="math_verify_ok"))["corrected"] == c


# --- SQuAD v2 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The  Quick, Brown-Fox!", "quick brownfox"),
        ("An apple a day", "apple day"),
        ("Theater", "theater"),
        ("  Hello\n\tWORLD  ", "hello world"),
        ("A.", ""),
    ],
)
def test_squad_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


def test_squad_normalisation_in_scoring():
    items = scored("squad_v2", ["\\boxed{The  Quick, Brown-Fox!}"], [["quick brownfox"]])
    assert items.loc[0, "em"] == 1.0 and items.loc[0, "score"] == 1.0


def test_squad_max_over_gold_answers():
    golds = [["Denver Broncos", "Broncos"], ["Denver Broncos", "Broncos"]]
    items = scored("squad_v2", ["\\boxed{the Broncos team}", "\\boxed{Broncos}"], golds)
    # [broncos, team] vs [denver, broncos]: p=r=1/2 -> 1/2; vs [broncos]: p=1/2 r=1 -> 2/3
    assert items.loc[0, "score"] == approx(2 / 3) and items.loc[0, "em"] == 0.0
    assert items.loc[1, "score"] == 1.0 and items.loc[1, "em"] == 1.0
    # reference: first gold only -> 1/2, and [broncos] vs [denver, broncos]: p=1 r=1/2 -> 2/3
    assert items.loc[0, "ref_score"] == approx(1 / 2)
    assert items.loc[1, "ref_score"] == approx(2 / 3)


def test_squad_unanswerable_items():
    replies = [
        "\\boxed{}",
        "\\boxed{unanswerable}",
        "\\boxed{N/A}",
        "\\boxed{Not mentioned}",
        "\\boxed{Paris}",
    ]
    items = scored("squad_v2", replies, [[]] * 5)
    assert list(items["score"]) == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert list(items["em"]) == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert list(items["parsed"]) == ["", "", "", "", "Paris"]
    assert not items["has_answer"].any() and items["parsed_ok"].all()
    # reference: "unanswerable" is not mapped to "" for F1 ("n/a" normalises to "na", not "n a")
    assert list(items["ref_score"]) == [1.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "text",
    [
        "The answer is not in the passage.",
        "The passage does not contain the answer",
        "The passage doesn't say.",
        "Not mentioned in the passage.",
        "This information is not provided in the text.",
        "There is no answer",
        "unanswerable.",
        "Cannot be determined from the passage",
        "It is impossible to tell from the context.",
        "No answer is provided in the text",
        "No information given",
        "None",
        "\\text{unknown}",
    ],
)
def test_squad_abstentions_are_no_answer(text):
    assert squad_v2.is_no_answer(text)
    assert parse_reply("squad_v2", f"\\boxed{{{text}}}") == ("", True)
    items = scored("squad_v2", [f"\\boxed{{{text}}}"], [[]])
    assert (items.loc[0, "em"], items.loc[0, "score"]) == (1.0, 1.0)


@pytest.mark.parametrize(
    "text",
    [
        "not guilty",
        "None of the above",
        "no taxation without representation",
        "Unknown Soldier",
        "the text of the treaty",
        "Northern Ireland",
        "not in use",
        "No",
    ],
)
def test_squad_ordinary_spans_are_answers(text):
    assert not squad_v2.is_no_answer(text)
    assert parse_reply("squad_v2", f"\\boxed{{{text}}}") == (text, True)
    items = scored("squad_v2", [f"\\boxed{{{text}}}"], [[text]])
    assert (items.loc[0, "em"], items.loc[0, "score"]) == (1.0, 1.0)


def test_squad_none_matches_a_gold_none_and_abstains_on_an_unanswerable_item():
    items = scored("squad_v2", ["\\boxed{None}", "\\boxed{None}", "\\boxed{None}"], [["None"], [], ["1990"]])
    assert list(items["parsed"]) == ["", "", ""]
    # has-answer gold "None": the literal text matches; unanswerable: a correct abstention; else wrong
    assert list(items["em"]) == [1.0, 1.0, 0.0]
    assert list(items["score"]) == [1.0, 1.0, 0.0]
    items = scored("squad_v2", ["\\boxed{Not mentioned}"], [["not mentioned", "never"]])
    assert items.loc[0, "em"] == 1.0


def test_squad_reply_without_box():
    # corrected: the full reply is the prediction, and the missing box is counted apart
    assert parse_reply("squad_v2", "  Paris \n") == ("Paris", False)
    items = scored("squad_v2", ["Paris", "I think it is Paris."], [["Paris"], []])
    assert list(items["parsed_ok"]) == [False, False]
    assert list(items["score"]) == [1.0, 0.0]
    # reference: no box -> "" = no answer: wrong on the answerable item, F1 = 1 on the unanswerable one
    assert list(items["ref_parsed"]) == ["", ""]
    assert list(items["ref_score"]) == [0.0, 1.0]


def test_squad_summary_both_protocols():
    replies = [
        "\\boxed{Paris}",
        "\\boxed{the Broncos team}",
        "\\boxed{unanswerable}",
        "No boxed here",
        "\\boxed{none}",
    ]
    golds = [["Paris"], ["Denver Broncos", "Broncos"], [], [], ["1990"]]
    items = scored("squad_v2", replies, golds)
    assert list(items["has_answer"]) == [True, True, False, False, True]
    s = summarize("squad_v2", items)
    # corrected per item (em, f1): (1, 1), (0, 2/3), (1, 1), (0, 0), (0, 0)
    c = s["corrected"]
    assert c["em"] == approx(2 / 5)
    assert c["f1"] == approx(8 / 15)
    assert c["has_ans_em"] == approx(1 / 3)
    assert c["has_ans_f1"] == approx(5 / 9)
    assert c["no_ans_em"] == 0.5
    assert (c["n_has_ans"], c["n_no_ans"], c["parse_rate"], c["n"]) == (3, 2, 0.8, 5)
    # reference per item (em, f1, has_gold, has_pred): (1, 1, T, T), (0, 1/2, T, T),
    # (0, 0, F, F), (1, 1, F, F), (0, 0, T, F)
    assert s["reference"] == {
        "EM": 40.0,
        "F1": 50.0,
        "HasAns_EM": 33.33,
        "HasAns_F1": 50.0,
        "NoAns_Accuracy": 100.0,
        "AvNA_Accuracy": 80.0,
        "format_success_rate": 80.0,
    }
    assert reference_metrics("squad_v2", replies, golds, rounded=False)["HasAns_EM"] == approx(100 / 3)
    assert s["headline"] == {"name": "f1", "value": approx(8 / 15), "higher_is_better": True}


# --- frames ---------------------------------------------------------------------------


def test_summarize_after_parquet_round_trip_with_text_golds(tmp_path):
    # Evaluation stores golds as text (ARC label, str() of the OpenMath number) and SQuAD
    # gold lists, which come back from parquet as arrays; the summaries must not change.
    replies = ["\\boxed{Paris}", "\\boxed{}", "\\boxed{Rome}"]
    golds = [["Paris", "paris"], [], ["Berlin"]]
    items = scored("squad_v2", replies, golds)
    path = tmp_path / "items.parquet"
    items.to_parquet(path)
    back = pd.read_parquet(path)
    assert summarize("squad_v2", back) == summarize("squad_v2", items)
    # f1 per item 1, 1, 0; reference EM/F1 per item 1, 1, 0
    assert summarize("squad_v2", back)["corrected"]["f1"] == approx(2 / 3)
    assert summarize("squad_v2", back)["reference"]["F1"] == 66.67

    math_items = scored("openmath", ["\\boxed{1008}", "\\boxed{16.67}"], [1008.0, 16.67])
    math_items["gold"] = [str(g) for g in [1008.0, 16.67]]
    s = summarize("openmath", math_items)
    assert s["reference"] == {"avg_abs_diff": 0.0, "accuracy": 100.0, "format_success_rate": 100.0}
    assert s["corrected"]["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("task", "golds", "extra"),
    [
        ("arc", ["A", "B"], ["gold_letter"]),
        ("openmath", [1.0, 2.0], ["abs_diff", "math_verify_ok"]),
        ("squad_v2", [["x"], []], ["em", "has_answer"]),
    ],
)
def test_item_columns_and_text_dtypes(task, golds, extra):
    items = score_items(task, ["\\boxed{A}", "no box"], golds)
    expected = [
        "parsed",
        "parsed_ok",
        "score",
        *extra,
        "format_ok",
        "flex_parsed",
        "flex_score",
        "ref_parsed",
        "ref_score",
    ]
    assert list(items.columns) == expected
    assert all(isinstance(v, str) for v in items["parsed"])
    assert all(isinstance(v, str) for v in items["ref_parsed"])
    assert items["parsed_ok"].dtype == bool and items["score"].dtype == float


def test_empty_input():
    s = summarize("arc", scored("arc", [], []))
    assert s["corrected"] == {"accuracy": None, "macro_f1": None, "parse_rate": None, "n": 0}
    assert s["reference"] == {"macro_f1": 0.0, "accuracy": 0.0, "format_success_rate": 0.0}


def test_openmath_gold_that_is_no_number_is_scored_by_equivalence_not_refused():
    """The shipped HF-schema OpenMath sample has golds such as "[2,5)": such an item is scored by
    math-verify's equivalence (exact match has no number to compare) and is never dropped."""
    replies = ["\\boxed{[2,5)}", "\\boxed{[2,6)}", "no box", "\\boxed{7}"]
    golds = ["[2,5)", "[2,5)", "[2,5)", 7.0]
    items = scoring.score_items("openmath", replies, golds)
    assert items["score"].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert items["parsed_ok"].tolist() == [True, True, False, True]
    frame = items.assign(reply=replies, gold=[str(g) for g in golds])
    corrected = scoring.summarize("openmath", frame)["corrected"]
    assert corrected["accuracy"] == 0.5 and corrected["n"] == 4
    assert corrected["mean_abs_diff"] == 0.0  # over the replies with a numeric gold and a parsed number
