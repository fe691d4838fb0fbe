"""The report's statistics and the SQuAD v2 metric against independent implementations.

Each hand-written function is compared with a library that computes the same thing
(statsmodels, scikit-learn, SciPy) or, for SQuAD v2, with the official evaluation script's own
functions copied below. Where the project's rule departs from the reference on purpose, the
departure is named in a docstring and tested on its own.
"""

from __future__ import annotations

import collections
import json
import re
import string

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import f1_score
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

from peftlab.core import stats
from peftlab.core.paths import repo_root
from peftlab.tasks import squad_v2
from peftlab.tasks.scoring import score_items

# --------------------------------------------------------------------------------------
# Holm
# --------------------------------------------------------------------------------------


def _pvalue_vectors() -> list[np.ndarray]:
    rng = np.random.default_rng(20240611)
    vectors = [
        np.array([0.01]),
        np.array([1.0, 1.0, 1.0]),
        np.array([0.0, 0.0, 1e-300, 0.5]),
        np.array([0.01, 0.01, 0.01, 0.04, 0.04]),  # ties at the step-down boundary
        np.array([0.04, 0.03, 0.02, 0.01]),  # decreasing: the running maximum matters
        np.array([0.2, 0.01, 0.015, 1.0, 0.5, 0.03]),
    ]
    for size in (2, 3, 5, 8, 13, 30, 64):
        for _ in range(4):
            p = rng.uniform(size=size) ** rng.choice([1.0, 3.0, 8.0])  # skewed towards 0
            p[rng.random(size) < 0.15] = 1.0
            p[rng.random(size) < 0.1] = rng.choice([1e-12, 1e-300, 5e-324])
            if size > 3:
                p[size // 2] = p[0]  # a tie
            vectors.append(p)
    return vectors


@pytest.mark.parametrize("pvalues", _pvalue_vectors(), ids=lambda p: f"m{len(p)}")
def test_holm_matches_statsmodels(pvalues):
    adjusted, divisors = stats.holm(pvalues)
    expected = multipletests(pvalues, method="holm")[1]
    np.testing.assert_allclose(adjusted, expected, rtol=1e-12, atol=0)
    assert sorted(divisors.tolist()) == list(range(1, len(pvalues) + 1))


def test_holm_leaves_nan_out_of_the_family():
    """A NaN p-value (no test) is not in the family: the others are adjusted as statsmodels
    adjusts them alone, and the NaN stays NaN."""
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan, 0.5])
    adjusted, _ = stats.holm(p)
    tested = ~np.isnan(p)
    assert np.isnan(adjusted[~tested]).all()
    np.testing.assert_allclose(adjusted[tested], multipletests(p[tested], method="holm")[1], rtol=1e-12)


# --------------------------------------------------------------------------------------
# Agresti-Caffo interval of a difference of two proportions
# --------------------------------------------------------------------------------------


def _count_grid() -> list[tuple[int, int, int, int]]:
    cells = []
    for n_a in (1, 2, 7, 40):
        for n_b in (1, 3, 40):
            for c_a in sorted({0, 1, n_a // 2, n_a - 1, n_a}):
                for c_b in sorted({0, 1, n_b // 3, n_b - 1, n_b}):
                    cells.append((c_a, n_a, c_b, n_b))
    cells += [(0, 500, 500, 500), (500, 500, 0, 500), (250, 500, 249, 1000), (1, 1000, 0, 10)]
    return cells


@pytest.mark.parametrize("level", [0.95, 0.99, 1 - 0.05 / 30])
def test_agresti_caffo_interval_matches_statsmodels(level):
    """``proportion_diff(a, b)``'s ``center +- z * se`` is the Agresti-Caffo interval of
    p_a - p_b: statsmodels' ``confint_proportions_2indep(count1=a, ..., count2=b, ...,
    method="agresti-caffo", compare="diff")`` at ``alpha = 1 - level``; the same z
    (``z_value(level)``) that the report builds its intervals and p-values with."""
    z = stats.z_value(level)
    for c_a, n_a, c_b, n_b in _count_grid():
        out = stats.proportion_diff(c_a, n_a, c_b, n_b)
        low, high = confint_proportions_2indep(
            c_a, n_a, c_b, n_b, method="agresti-caffo", compare="diff", alpha=1 - level
        )
        got = (out["center"] - z * out["se"], out["center"] + z * out["se"])
        np.testing.assert_allclose(got, (low, high), rtol=0, atol=1e-12, err_msg=f"counts {(c_a, n_a, c_b, n_b)}")
        assert out["estimate"] == pytest.approx(c_a / n_a - c_b / n_b)


# --------------------------------------------------------------------------------------
# Macro-F1
# --------------------------------------------------------------------------------------

UNPARSED = "<unparsed>"  # a label outside every class list below


def _sklearn_macro_f1(golds, preds, classes, *, fixed_classes: bool) -> float:
    """Each class rule written with scikit-learn's ``f1_score(average="macro", zero_division=0)``.

    Both rules drop an item whose gold is not a class (it counts nowhere).

    * ``fixed_classes=True`` (the reference scoring's rule): keep only the items whose gold
      *and* prediction are classes, and average over every class given
      (``labels=classes``). An unparsed prediction is thus neither a miss nor a false alarm.
    * ``fixed_classes=False`` (corrected): keep every item; a prediction that is not a class
      becomes the extra label ``UNPARSED``, which is left out of ``labels`` so that it has no
      F1 of its own but still counts as a false negative of the item's gold class. The
      average is over the first four classes (A-D: every question has them) plus any further
      class that occurs among the kept items' golds or predictions.

    scikit-learn refuses an empty input; with no item kept every class has F1 0, so 0.0.
    """
    classes = list(classes)
    if fixed_classes:
        pairs = [(g, p) for g, p in zip(golds, preds) if g in classes and p in classes]
        labels = classes
    else:
        pairs = [(g, p if p in classes else UNPARSED) for g, p in zip(golds, preds) if g in classes]
        seen = {x for pair in pairs for x in pair}
        labels = [c for i, c in enumerate(classes) if i < 4 or c in seen]
    if not pairs:
        return 0.0
    y_true, y_pred = zip(*pairs)
    return float(f1_score(list(y_true), list(y_pred), labels=labels, average="macro", zero_division=0))


def _labelled_cases():
    rng = np.random.default_rng(7)
    cases = [
        (list("ABCD"), list("ABCD"), list("ABCD")),  # perfect
        (list("AAAA"), [None, None, None, None], list("ABCD")),  # nothing parsed
        (list("ABCD"), list("BCDA"), list("ABCD")),  # all wrong
        (list("ABCDE"), list("ABCDA"), list("ABCDE")),  # a fifth option
        (list("ABCD"), list("ABCE"), list("ABCDE")),  # E only predicted
        (["1", "A", "B"], list("AAB"), list("ABCD")),  # a gold outside the classes
    ]
    for _ in range(300):
        classes = list("ABCDE")[: rng.integers(2, 6)]
        n = int(rng.integers(1, 40))
        golds = [classes[i] for i in rng.integers(0, len(classes), n)]
        if rng.random() < 0.3:
            golds[int(rng.integers(0, n))] = "Z"  # gold outside the classes
        pool = [*classes, None, "X", "", "1"]
        preds = [pool[i] for i in rng.integers(0, len(pool), n)]
        cases.append((golds, preds, classes))
    return cases


@pytest.mark.parametrize("fixed_classes", [True, False], ids=["reference-rule", "corrected-rule"])
def test_macro_f1_matches_sklearn(fixed_classes):
    for golds, preds, classes in _labelled_cases():
        expected = _sklearn_macro_f1(golds, preds, classes, fixed_classes=fixed_classes)
        got = stats.macro_f1(golds, preds, classes, fixed_classes=fixed_classes)
        assert got == pytest.approx(expected, abs=1e-12), (golds, preds, classes)
        # the code path the bootstrap uses: class codes, -1 = unparsed / no class
        lookup = {c: i for i, c in enumerate(classes)}
        codes = np.array([[lookup.get(g, -1), lookup.get(p, -1)] for g, p in zip(golds, preds)]).reshape(-1, 2)
        coded = stats.macro_f1_codes(codes, len(classes), fixed_classes=fixed_classes)
        assert coded == pytest.approx(expected, abs=1e-12), (golds, preds, classes)


# --------------------------------------------------------------------------------------
# Cluster bootstrap: with one item per cluster it is SciPy's paired bootstrap
# --------------------------------------------------------------------------------------

N_BOOT = 20_000
# The Monte-Carlo standard deviation of a bootstrap standard error from B replicates is about
# se / sqrt(2B) (normal-shaped replicates); two independent estimates differ by about
# se / sqrt(B). Four of those is the tolerance: 2.8 % at B = 20000.
MC_TOLERANCE = 4 / np.sqrt(N_BOOT)


def _paired_samples():
    rng = np.random.default_rng(3)
    n = 120
    a = (rng.random(n) < 0.6).astype(float)  # per-item correctness
    flip = rng.random(n) < 0.25
    b = np.where(flip, 1 - a, a)  # the other side: mostly the same items right
    f1_a = rng.beta(2, 1, size=n)  # per-item F1 values
    f1_b = np.clip(f1_a + rng.normal(0, 0.2, size=n), 0, 1)
    return {"correct": (a, b), "f1": (f1_a, f1_b)}


@pytest.mark.parametrize("kind", ["correct", "f1"])
def test_cluster_bootstrap_se_matches_scipy_paired(kind):
    """With one item per cluster and one run per side, ``cluster_bootstrap_diff``'s standard
    error is the paired bootstrap's of mean(a - b): SciPy's ``bootstrap((a, b), paired=True)``
    agrees within Monte-Carlo noise, and both agree with the exact (infinite-B) bootstrap
    standard error sqrt(sum((d - mean d)^2)) / n of the differences d."""
    a, b = _paired_samples()[kind]
    ours = stats.cluster_bootstrap_diff([a], [b], list(range(len(a))), statistic="mean", n_boot=N_BOOT, seed=11)
    scipy_result = bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=N_BOOT,
        method="percentile",
        rng=np.random.default_rng(12),
    )
    d = a - b
    exact = np.sqrt(np.sum((d - d.mean()) ** 2)) / len(d)
    assert ours["estimate"] == pytest.approx(d.mean(), abs=1e-12)
    assert ours["se"] == pytest.approx(scipy_result.standard_error, rel=MC_TOLERANCE)
    assert ours["se"] == pytest.approx(exact, rel=MC_TOLERANCE)
    assert scipy_result.standard_error == pytest.approx(exact, rel=MC_TOLERANCE)


# --------------------------------------------------------------------------------------
# SQuAD v2
# --------------------------------------------------------------------------------------

# The official SQuAD 2.0 evaluation script's functions (evaluate-v2.0.py, "Official evaluation
# script for SQuAD version 2.0", Rajpurkar et al. 2018), copied verbatim from the copy the
# Hugging Face `datasets` repository vendors as metrics/squad_v2/evaluate.py (the original,
# formatted by black). Only the names of the four functions are prefixed with `official_`.


def official_normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_get_tokens(s):
    if not s:
        return []
    return official_normalize_answer(s).split()


def official_compute_exact(a_gold, a_pred):
    return int(official_normalize_answer(a_gold) == official_normalize_answer(a_pred))


def official_compute_f1(a_gold, a_pred):
    gold_toks = official_get_tokens(a_gold)
    pred_toks = official_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def official_item_scores(gold_texts, a_pred):
    """One question's (EM, F1): the body of the script's `get_raw_scores` for one `qa`."""
    gold_answers = [a for a in gold_texts if official_normalize_answer(a)]
    if not gold_answers:
        # For unanswerable questions, only correct answer is empty string
        gold_answers = [""]
    return (
        max(official_compute_exact(a, a_pred) for a in gold_answers),
        max(official_compute_f1(a, a_pred) for a in gold_answers),
    )


# End of the official script's code.


def _shipped_items() -> list[dict]:
    path = repo_root() / "data" / "hf" / "squad_v2_validation.jsonl"
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _perturbed(text: str, context: str) -> list[str]:
    words = text.split()
    out = [
        text,
        text.upper(),
        text.lower(),
        text.title(),
        f"{text}.",
        f'"{text}"',
        f"({text})",
        f"{text}!?",
        text.replace(",", "").replace(".", "").replace("-", " "),
        f"The {text}",
        f"an {text}",
        f"a {text} the",
        f"{text} and more",
        f"  {text}   ",
        "  ".join(words),
        text.replace(" ", "\t"),
    ]
    if len(words) > 1:
        out += [" ".join(words[1:]), " ".join(words[:-1]), " ".join(reversed(words)), f"{text} {words[0]}"]
    at = context.find(text)
    if at >= 0:  # the span with a few words of its passage either side
        before = context[:at].split()[-3:]
        after = context[at + len(text) :].split()[:3]
        out.append(" ".join([*before, text, *after]))
    return out


def _squad_pairs() -> tuple[list[str], list[tuple[str, str]]]:
    """Every string the pairs use, and (gold, prediction) pairs built from the shipped items:
    each gold against itself, its item's other golds, other items' golds, perturbations of
    itself, a window of its passage, the question, and empty strings; both ways round."""
    items = _shipped_items()
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        golds = list(item["answers"]["text"])
        others = [t for k in (1, 7, 101) for t in items[(index + k) % len(items)]["answers"]["text"]]
        context_words = item["context"].split()
        extras = ["", " ", "the", "a an the", item["question"], " ".join(context_words[:6])]
        for gold in golds or [""]:
            predictions = [*golds, *others, *extras, *(_perturbed(gold, item["context"]) if gold else [])]
            for prediction in predictions:
                pairs.append((gold, prediction))
                pairs.append((prediction, gold))
    texts = sorted({s for pair in pairs for s in pair})
    return texts, pairs


SQUAD_TEXTS, SQUAD_PAIRS = _squad_pairs()


def test_squad_pairs_cover_the_shipped_items():
    items = _shipped_items()
    assert len(items) > 500
    assert sum(not item["answers"]["text"] for item in items) > 100  # unanswerable ones too
    assert len(SQUAD_PAIRS) > 20_000


def test_squad_normalize_answer_matches_official():
    for text in SQUAD_TEXTS:
        assert squad_v2.normalize_answer(text) == official_normalize_answer(text), repr(text)


def test_squad_compute_exact_matches_official():
    for gold, prediction in SQUAD_PAIRS:
        assert squad_v2.compute_exact(gold, prediction) == official_compute_exact(gold, prediction), (gold, prediction)


def test_squad_compute_f1_matches_official():
    """Equal to the last bit, including the official rule that two empty token lists agree:
    ``""`` against ``"the"`` (nothing left after normalisation) scores 1, as in the script."""
    assert squad_v2.compute_f1("", "the") == official_compute_f1("", "the") == 1
    for gold, prediction in SQUAD_PAIRS:
        assert squad_v2.compute_f1(gold, prediction) == official_compute_f1(gold, prediction), (gold, prediction)


def _boxed(prediction: str) -> str:
    return f"The answer is \\boxed{{{prediction}}}."


def test_squad_item_scores_match_official():
    """Per question, ``score_items``' corrected ``em`` and ``score`` (F1) are the official
    script's: the maximum over the gold answers, an item whose golds normalise to nothing
    scored against ``""``. Predictions are boxed; abstention sentences are left out here
    (the departure below)."""
    items = _shipped_items()
    replies, golds, expected = [], [], []
    for index, item in enumerate(items):
        gold_texts = list(item["answers"]["text"])
        others = [t for k in (1, 13) for t in items[(index + k) % len(items)]["answers"]["text"]]
        candidates = {*gold_texts, *others, item["question"], " ".join(item["context"].split()[:5])}
        for gold in gold_texts:
            candidates.update(_perturbed(gold, item["context"]))
        for prediction in sorted(candidates):
            if not prediction.strip() or squad_v2.is_no_answer(prediction):
                continue
            replies.append(_boxed(prediction))
            golds.append(gold_texts)
            expected.append(official_item_scores(gold_texts, prediction))
    frame = score_items("squad_v2", replies, golds)
    assert len(frame) > 5_000
    for row, (em, f1), reply, gold in zip(frame.itertuples(), expected, replies, golds):
        assert (row.em, row.score) == (em, f1), (reply, gold)


ABSTENTIONS = [
    "unanswerable",
    "The passage does not contain the answer",
    "Not mentioned in the passage",
    "Cannot be determined from the text",
    "There is no answer",
]


def test_squad_departure_abstention_is_no_answer():
    """Departure from the official metric: the corrected protocol reads an abstention sentence
    (``is_no_answer``: "unanswerable", "The passage does not contain the answer", ...) as the
    empty prediction. On an unanswerable question it therefore scores EM = F1 = 1, where the
    official script, comparing the literal text with ``""``, gives 0. On an answerable question
    the two agree (0: an abstention is not the answer)."""
    items = _shipped_items()
    unanswerable = [item for item in items if not item["answers"]["text"]][:50]
    answerable = [item for item in items if item["answers"]["text"]][:50]
    for phrase in ABSTENTIONS:
        assert official_item_scores([], phrase) == (0, 0)
        frame = score_items("squad_v2", [_boxed(phrase)] * len(unanswerable), [[] for _ in unanswerable])
        assert (frame["em"] == 1.0).all() and (frame["score"] == 1.0).all(), phrase
        golds = [list(item["answers"]["text"]) for item in answerable]
        frame = score_items("squad_v2", [_boxed(phrase)] * len(answerable), golds)
        official = [official_item_scores(g, phrase) for g in golds]
        assert list(zip(frame["em"], frame["score"])) == [(float(e), float(f)) for e, f in official], phrase


def test_squad_departure_literal_reading_kept():
    """The abstention reading never lowers a score: a gold that is itself a no-answer word
    ("None", "unknown") is matched by the literal text, as the official script matches it."""
    for gold in ("None", "unknown", "no answer"):
        frame = score_items("squad_v2", [_boxed(gold)], [[gold]])
        assert (frame["em"].item(), frame["score"].item()) == official_item_scores([gold], gold) == (1, 1.0)
