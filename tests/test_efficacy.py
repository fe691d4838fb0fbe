"""Efficacy that measures the skill, not the answer format: the flexible readings, format as a
measure of its own, chance and the floor, and replies cut at the token cap, on hand-made records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from handmade import N, golds, mask, write_model
from peftlab.analysis.comparisons import FORMAT_MEASURES, Analysis
from peftlab.analysis.questions import answer_questions
from peftlab.analysis.study_records import load_study
from peftlab.analysis.table1 import table1, table1_html
from peftlab.report.prose import caveats
from peftlab.tasks import scoring

# --- the flexible readings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, letter",
    [
        ("\\boxed{C}", "C"),
        ("A. the radiation that is present in the star\n\nThe correct answer is: A.", "A"),
        ("A. pencils falling\n\nThe correct answer is D. A.", "A"),  # the reply opens with its choice
        ("(B) the moon", "B"),
        ("The correct answer is D.", "D"),
        ("The answer is: (C) a diagram", "C"),
        ("A student should measure twice.", ""),  # the article, not an option
        ("I am not sure.", ""),
        ("3. the sun", "C"),
    ],
)
def test_arc_flexible_reading(reply, letter):
    items = scoring.score_items("arc", [reply], ["C"])
    assert items["flex_parsed"].iloc[0] == letter
    assert items["flex_score"].iloc[0] == float(letter == "C")
    assert items["format_ok"].iloc[0] == reply.startswith("\\boxed")


@pytest.mark.parametrize(
    "reply, right",
    [
        ("\\boxed{42}", True),
        ("First 40, then 2 more: 42.", True),  # lm-eval's flexible-extract: the last number
        ("The total is $1,200.", False),
        ("To solve this problem, we need 3 steps", False),  # cut before an answer: its last number is not one
        ("so the answer is \\frac{84}{2}", True),  # math-verify's equivalence
    ],
)
def test_openmath_flexible_reading(reply, right):
    items = scoring.score_items("openmath", [reply], [42.0])
    assert items["flex_score"].iloc[0] == float(right)
    assert items["format_ok"].iloc[0] == ("\\boxed" in reply)


def test_squad_flexible_reading_takes_the_box_else_the_first_line():
    replies = ["\\boxed{Einstein}", "Einstein\nHe developed relativity.", "The passage does not contain the answer."]
    items = scoring.score_items("squad_v2", replies, [["Einstein"], ["Albert Einstein"], []])
    assert items["flex_parsed"].tolist() == ["Einstein", "Einstein", ""]
    assert items["flex_score"].tolist() == pytest.approx([1.0, 2 / 3, 1.0])
    assert items["format_ok"].tolist() == [True, False, False]


def test_summaries_carry_the_flexible_format_and_cut_shares():
    items = scoring.score_items("arc", ["\\boxed{A}", "B. x", "no idea", "\\boxed{D}"], ["A", "B", "C", "A"])
    items.insert(0, "reply", ["\\boxed{A}", "B. x", "no idea", "\\boxed{D}"])
    items.insert(1, "gold", ["A", "B", "C", "A"])
    items["hit_max_new_tokens"] = [False, False, True, False]
    corrected = scoring.summarize("arc", items)["corrected"]
    assert corrected["accuracy"] == 0.25 and corrected["flexible"] == 0.5
    assert corrected["format_rate"] == 0.5 and corrected["cut_rate"] == 0.25


def configs(an: Analysis) -> dict[str, str]:
    """Run name -> its configuration's name."""
    return {model: config for config, models in zip(an.cfg["config"], an.cfg["models"]) for model in models}


# --- format as its own measure ---------------------------------------------------------------------


def _letters(right: np.ndarray) -> list[str]:
    gold = golds("arc")
    return [g if ok else "ABCD"[("ABCD".index(g) + 1) % 4] for g, ok in zip(gold, right)]


@pytest.fixture
def format_learner(tmp_path):
    """An untuned base that states its letter without a box, and a trained model that gives the
    same letters in the box: it learned the format and nothing else (25 % right: chance)."""
    letters = _letters(mask(10))
    base = [f"{letter}. because" for letter in letters]
    boxed = [f"\\boxed{{{letter}}}" for letter in letters]
    write_model(tmp_path, "base-tiny", tasks=("arc",), texts={"arc": base})
    write_model(
        tmp_path, "squad_v2-lora-r8-s0", method="lora", rank=8, train_task="squad_v2", seed=0, tasks=("arc",),
        texts={"arc": boxed},
    )  # fmt: skip
    return Analysis(load_study(tmp_path))


def test_a_model_that_learns_only_the_format_gains_format_not_efficacy(format_learner):
    an = format_learner
    lora, base = configs(an)["squad_v2-lora-r8-s0"], configs(an)["base-tiny"]
    skill = an.adjust([an.compare(lora, base, "arc")], "skill").iloc[0]
    assert skill["metric"] == "arc_flex_accuracy" and skill["diff"] == 0 and not skill["decisive"]
    fmt = an.adjust([an.compare(lora, base, "arc", FORMAT_MEASURES["arc"])], "format").iloc[0]
    assert fmt["metric"] == "arc_format" and fmt["diff"] == pytest.approx(100.0)
    assert fmt["decisive"] and fmt["better"] == "a"
    # the strict measure alone would have called it a gain in what the model knows
    strict = an.adjust([an.compare(lora, base, "arc", "arc_accuracy")], "strict").iloc[0]
    assert strict["decisive"] and strict["better"] == "a"


# --- chance and the floor --------------------------------------------------------------------------


def test_at_chance_configurations_are_labelled_and_never_decisive_against_each_other(tmp_path):
    write_model(tmp_path, "base-tiny", tasks=("arc", "openmath"), correct={"arc": mask(9), "openmath": mask(1)})
    write_model(
        tmp_path, "squad_v2-lora-r8-s0", method="lora", rank=8, train_task="squad_v2", seed=0,
        tasks=("arc", "openmath"), correct={"arc": mask(13), "openmath": mask(30)},
    )  # fmt: skip
    write_model(
        tmp_path, "squad_v2-full-s0", method="full", train_task="squad_v2", seed=0, tasks=("arc", "openmath"),
        correct={"arc": mask(36), "openmath": mask(0)},
    )  # fmt: skip
    an = Analysis(load_study(tmp_path))
    name = configs(an)
    base, lora, full = name["base-tiny"], name["squad_v2-lora-r8-s0"], name["squad_v2-full-s0"]
    assert an.at_chance(base, "arc") and an.at_chance(lora, "arc")  # 22.5 %, 32.5 % with 4 options
    assert not an.at_chance(full, "arc")  # 90 %
    assert an.rows("arc").set_index("config").loc[base, "chance"] == pytest.approx(25.0)
    assert an.at_chance(base, "openmath") and an.at_chance(full, "openmath")  # the floor: 1/40, 0
    assert not an.at_chance(lora, "openmath")
    pair = an.adjust([an.compare(lora, base, "arc")], "Q").iloc[0]
    assert pair["flag"] == "both at chance" and not pair["decisive"] and "both at chance" in pair["note"]
    assert an.informative("arc") and an.informative("openmath")


def test_a_task_where_every_configuration_is_at_chance_is_not_informative(tmp_path):
    write_model(tmp_path, "base-tiny", tasks=("arc",), correct=mask(10))
    write_model(
        tmp_path, "squad_v2-lora-r8-s0", method="lora", rank=8, train_task="squad_v2", seed=0, tasks=("arc",),
        correct=mask(11),
    )  # fmt: skip
    assert not Analysis(load_study(tmp_path)).informative("arc")


# --- replies cut at the cap ------------------------------------------------------------------------


@pytest.fixture
def cut_study(tmp_path):
    cut = np.zeros(N, dtype=bool)
    cut[: N // 2] = True  # half the base's replies reach max_new_tokens
    write_model(tmp_path, "base-tiny", tasks=("openmath",), correct=mask(0), latency=0.8, tokens=32, cut=cut)
    write_model(
        tmp_path, "openmath-lora-r8-s0", method="lora", rank=8, train_task="openmath", seed=0, tasks=("openmath",),
        correct=mask(2), latency=0.1, tokens=4, cut=np.zeros(N, dtype=bool),
    )  # fmt: skip
    return tmp_path


def test_a_model_cut_at_the_cap_is_flagged_in_table1(cut_study):
    table = table1(load_study(cut_study)).set_index("method")
    assert table.loc["—", "openmath_cut"] == pytest.approx(50.0) and table.loc["LoRA", "openmath_cut"] == 0.0
    html = table1_html(table.reset_index())
    assert html.count("⚠") == 1 and "50.0 ⚠" in html


def test_latency_and_tokens_against_a_cut_model_are_never_faster_decisively(cut_study):
    an = Analysis(load_study(cut_study))
    base, lora = configs(an)["base-tiny"], configs(an)["openmath-lora-r8-s0"]
    assert an.cut(base, "openmath") and not an.cut(lora, "openmath")
    for measure in ("latency_s", "tokens"):
        row = an.adjust([an.compare(lora, base, "openmath", measure)], "Q7").iloc[0]
        assert row["flag"] == "cut at the cap" and not row["decisive"] and row["verdict"] == "tie"
        assert row["note"].startswith("cut at the cap")


# --- the questions: skill and format apart ----------------------------------------------------------


def test_q4_and_q7_report_format_and_skill_as_separate_families(tmp_path):
    """A SQuAD adapter that learned only to box ARC's letters: Q4 finds a format gain, no skill gain;
    in domain (SQuAD) it gains the skill, which is what Q7's verdict rests on."""
    letters = _letters(mask(10))
    write_model(
        tmp_path, "base-tiny", tasks=("arc", "squad_v2"), correct={"squad_v2": mask(5)},
        texts={"arc": [f"{letter}. because" for letter in letters]},
    )  # fmt: skip
    write_model(
        tmp_path, "squad_v2-lora-r8-s0", method="lora", rank=8, train_task="squad_v2", seed=0,
        tasks=("arc", "squad_v2"), correct={"squad_v2": mask(35)},
        texts={"arc": [f"\\boxed{{{letter}}}" for letter in letters]},
    )  # fmt: skip
    records = load_study(tmp_path)
    answers = {a["id"]: a for a in answer_questions(records)}
    q4 = answers["Q4"]
    families = q4["comparisons"].groupby("family")
    skill, fmt = families.get_group("Q4").iloc[0], families.get_group("Q4 format").iloc[0]
    assert skill["metric"] == "arc_flex_accuracy" and not skill["decisive"]
    assert fmt["metric"] == "arc_format" and fmt["decisive"] and fmt["n"] == N and pd.notna(fmt["ci_low"])
    assert q4["status"] == "tie" and "answer format" in q4["answer"] and "LoRA: 1 gains, 0 losses" in q4["answer"]
    assert q4["rests_on"] == {"format": ["ARC replies in the answer format"]}
    assert "ARC: not informative at this scale" in " ".join(q4["notes"])  # both at chance on ARC
    q7 = answers["Q7"]
    assert q7["status"] == "decisive" and set(q7["comparisons"]["family"]) == {"Q7", "Q7 format"}
    assert q7["rests_on"]["skill"] == ["SQuAD v2 F1, flexible reading"]
    lines = caveats(records, list(answers.values()))
    assert any(line.startswith("What each decisive answer rests on") and "Q7: skill" in line for line in lines)


def test_the_findings_name_models_cut_at_the_cap(cut_study):
    records = load_study(cut_study)
    answers = answer_questions(records)
    q7 = next(a for a in answers if a["id"] == "Q7")
    assert any("cut at the cap" in note and "untuned" in note for note in q7["notes"])
    assert any("OpenMath: cut at the cap" in line for line in caveats(records, answers))
