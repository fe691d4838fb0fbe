"""The task registry: every entry is complete and consistent, and the project reads it (a reply
that writes the gold answer scores full marks under both protocols, its rows load from every
shipped source, and its Table 1 and comparison columns come from it)."""

from __future__ import annotations

import pytest

from peftlab.analysis.comparisons import EFFICACY_MEASURES, MEASURES
from peftlab.analysis.study_records import TABLE1_COLUMNS
from peftlab.config import TASKS as CONFIG_TASKS
from peftlab.core.errors import ConfigError
from peftlab.tasks import scoring
from peftlab.tasks.registry import TASKS, eval_messages, get_task, gold, load_rows, target, train_example


def test_the_configuration_accepts_exactly_the_registered_tasks():
    assert CONFIG_TASKS == tuple(TASKS)
    with pytest.raises(ConfigError, match="allowed: " + ", ".join(TASKS)):
        get_task("gsm8k")


@pytest.mark.parametrize("name", list(TASKS))
def test_entry_is_consistent(name):
    task = TASKS[name]
    assert set(task.scoring.efficacy_measures) <= {m.name for m in task.scoring.measures}
    assert set(EFFICACY_MEASURES[name]) == set(task.scoring.efficacy_measures)
    assert all(MEASURES[m.name] is m for m in task.scoring.measures)
    assert {c.name for c in task.presentation.table1_extra} <= set(task.presentation.record_figures)
    for column in (
        task.presentation.efficacy_column,
        task.latency_column,
        *(c.name for c in task.presentation.table1_extra),
    ):
        assert column in TABLE1_COLUMNS
    assert set(task.scoring.efficacy) == {"reference", "corrected"}
    assert task.scoring.efficacy["reference"][0] in task.scoring.published


SHIPPED = [
    (name, source) for name, task in TASKS.items() for source in ("reference", "hf") if task.data.builders.get(source)
]


@pytest.mark.parametrize("name, source", SHIPPED)
def test_rows_load_and_a_reply_with_the_gold_answer_scores_full_marks(name, source):
    task = TASKS[name]
    rows = load_rows(task=name, split="test", source=source, n=5)
    train = load_rows(task=name, split="train", source=source, n=5)
    assert len(rows) == 5 and len(train) == 5
    for row in rows:
        messages = eval_messages(name, row, "corrected")
        assert messages[0]["role"] == "system" and messages[0]["content"].startswith(task.prompting.system_prompt)
        reply = target(name, row, "corrected")  # what training teaches: the boxed answer
        items = scoring.score_items(name, [reply], [gold(name, row)])
        assert bool(items["parsed_ok"].iloc[0]) and items["score"].iloc[0] == 1.0, (row, reply)
        assert train_example(name, row, "corrected")["completion"][0]["content"] == reply
        cluster = task.scoring.cluster(row)
        assert isinstance(cluster, str) and cluster
