"""ARC-Easy: the easier half of the AI2 Reasoning Challenge, scored as ARC is.

Its evaluation split is ARC-Easy's validation set (570 questions, shipped in data/hf/). Rows,
prompts, parsing and both protocols' scoring are ARC's (tasks/arc.py); only its data, its
measures' names and its Table 1 columns are its own. The reference study did not evaluate it,
so it has no `data_source: reference`.
"""

from __future__ import annotations

from peftlab.tasks import arc
from peftlab.tasks.base import DataSpec, Measure, Presentation, Prompting, Scoring, Task
from peftlab.tasks.common import percent, skill_columns, skill_figures, skill_measures
from peftlab.tasks.registry import register

register(
    Task(
        name="arc_easy",
        label="ARC-Easy",
        prompting=Prompting(
            system_prompt=arc.SYSTEM_PROMPT,
            user_content=lambda row, protocol: row["question"],
            answer=lambda row, protocol: str(row["answer"]),
        ),
        scoring=Scoring(
            answer_kind="choice",
            gold=lambda row: row["answer"],
            parse=arc.parse_arc,
            score_item=arc.score_arc,
            item_columns={"gold_letter": "object"},
            summarize=arc.summarize_arc,
            summary_columns=("parsed", "gold_letter"),
            reference_metrics=arc.reference_arc,
            reference_units=arc.REFERENCE_UNITS,
            headline=("macro_f1", True),
            published=("macro_f1",),
            efficacy={"reference": ("macro_f1", 1.0), "corrected": ("macro_f1", 1.0)},
            count_metric=("arc_easy_accuracy", {"reference": ("accuracy", 0.01), "corrected": ("accuracy", 1.0)}),
            measures=(
                Measure(
                    "arc_easy_macro_f1",
                    "ARC-Easy macro-F1",
                    "",
                    statistic="macro_f1",
                    digits=3,
                    words="macro-F1",
                    short="macro-F1",
                    class_labels={"corrected": arc.ARC_OPTION_LETTERS, "reference": arc.ARC_LETTERS},
                    classes=arc.arc_classes,
                ),
                Measure(
                    "arc_easy_accuracy",
                    "ARC-Easy accuracy",
                    "%",
                    {"corrected": percent("score"), "reference": percent("ref_score")},
                    words="accuracy points",
                    short="accuracy %",
                    chance="chance",
                ),
                *skill_measures("arc_easy", "ARC-Easy", loglik=True),
            ),
            efficacy_measures=(
                "arc_easy_loglik_acc_norm",
                "arc_easy_flex_accuracy",
                "arc_easy_macro_f1",
                "arc_easy_accuracy",
            ),
            flexible=arc.flexible_arc,
            multiple_choice=arc.multiple_choice,
            chance=arc.chance,
        ),
        data=DataSpec(
            hf_files={"train": ("arc_easy_train.jsonl",), "test": ("arc_easy_validation.jsonl",)},
            hub=("allenai/ai2_arc", "ARC-Easy", {"train": "train", "test": "validation"}),
            builders={"hf": arc.arc_hf},
        ),
        presentation=Presentation(
            column="arc_easy",
            efficacy_column="arc_easy_f1",
            efficacy_header=("F1 ↑", 4),
            higher_is_better=True,
            efficacy_label="ARC-Easy macro-F1 ↑",
            table1_extra=skill_columns("arc_easy", loglik=True),
            table1_figures=skill_figures("arc_easy", loglik=True),
            record_figures=tuple(c.name for c in skill_columns("arc_easy", loglik=True)),
        ),
    )
)
