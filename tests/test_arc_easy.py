"""ARC-Easy, a task added as one module: its shipped validation split loads and scores, a study
that evaluates it shows it in Table 1, the questions and the plots, and a study that does not
is unchanged by it."""

from __future__ import annotations

import pytest

from handmade import mask, write_model
from peftlab.analysis.comparisons import configurations
from peftlab.analysis.questions import answer_questions
from peftlab.analysis.study_records import load_study
from peftlab.analysis.table1 import table1, table1_html
from peftlab.config import resolve_config
from peftlab.core.errors import ConfigError
from peftlab.report.plots import plot_pareto
from peftlab.tasks import scoring
from peftlab.tasks.registry import TASKS, gold, load_rows, target


def test_the_validation_split_is_the_evaluation_split_and_scores_like_arc():
    rows = load_rows(task="arc_easy", split="test", source="hf")
    assert len(rows) == 570
    assert rows[0]["id"] == "MCAS_2000_4_6" and rows[0]["answer"] == "A"
    assert load_rows(task="arc_easy", split="train", source="hf", n=3)
    replies = [target("arc_easy", row, "corrected") for row in rows[:20]]
    items = scoring.score_items("arc_easy", replies, [gold("arc_easy", row) for row in rows[:20]])
    assert items["score"].eq(1.0).all() and items["parsed_ok"].all()
    wrong = scoring.score_items("arc_easy", ["\\boxed{Z}", "The answer is (B)."], ["A", "B"])
    assert wrong["score"].tolist() == [0.0, 0.0]  # the box decides; a letter outside the box is unparsed


def test_the_reference_study_had_no_arc_easy_data():
    with pytest.raises(ConfigError, match="data_source.*no arc_easy data.*hf, hub"):
        resolve_config(overrides={"eval_tasks": ["arc_easy"], "data_source": "reference"})
    assert resolve_config(overrides={"eval_tasks": ["arc_easy"], "data_source": "hf"})["eval_tasks"] == ["arc_easy"]


@pytest.fixture
def study(tmp_path):
    tasks = ("arc", "arc_easy", "squad_v2")
    write_model(tmp_path, "base-tiny", correct=mask(10), tasks=tasks)
    write_model(
        tmp_path,
        "squad_v2-lora-r8-s0",
        method="lora",
        rank=8,
        train_task="squad_v2",
        seed=0,
        correct={"arc": mask(10), "arc_easy": mask(36), "squad_v2": mask(30)},
        latency=0.2,
        tasks=tasks,
    )
    return tmp_path


def test_a_study_that_evaluates_it_shows_it_in_table1_questions_and_plots(study):
    records = load_study(study)
    table = table1(records)
    assert {"arc_easy_f1", "arc_easy_latency_s"} <= set(table.columns)
    assert "openmath_absdiff" not in table.columns  # not evaluated: no columns
    lora = table[table["method"] == "LoRA"].iloc[0]
    assert lora["arc_easy_f1"] > table[table["method"] == "—"].iloc[0]["arc_easy_f1"]
    assert "ARC-Easy" in table1_html(table)
    q4 = next(a for a in answer_questions(records) if a["id"] == "Q4")
    off_task = q4["comparisons"]
    assert "arc_easy" in set(off_task["task"])  # off the training task, against the untuned base
    gain = off_task[off_task["task"] == "arc_easy"].iloc[0]
    assert gain["better"] == "a" and gain["n"] == 40
    configs = configurations(records=records)
    assert "arc_easy" in set(configs["task"])
    figure = plot_pareto(configs)
    assert "ARC-Easy" in [ax.get_title() for ax in figure.axes]


def test_a_study_without_it_has_no_arc_easy_columns(tmp_path):
    write_model(tmp_path, "base-tiny", correct=mask(10), tasks=("arc",))
    table = table1(load_study(tmp_path))
    assert not [c for c in table.columns if c.startswith("arc_easy")]
    assert "arc_easy" in TASKS


def test_every_shipped_arc_row_splits_into_its_options():
    """Log-likelihood choice scores each row's own options: three, four or five of them."""
    from peftlab.tasks.arc import arc_options

    for task, source in (("arc", "reference"), ("arc", "hf"), ("arc_easy", "hf")):
        rows = load_rows(task=task, split="test", source=source)
        for row in rows:
            stem, options = arc_options(row)
            assert stem and len(options) == len(row["labels"]) and all(options), row
    three = [r for r in load_rows(task="arc", split="test", source="reference") if len(r["labels"]) == 3]
    assert three and three[0]["id"] == "NYSEDREGENTS_2015_4_7"
