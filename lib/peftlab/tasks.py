"""The task registry: one entry per evaluation task, and how a row becomes chat messages.

An entry (`Task`) holds everything the project knows about a task: its prompts per protocol,
the answer a training row teaches, the gold it is scored against, its corrected parser and
metrics, the reference study's metrics, its headline metric and direction, its Table 1
columns, its comparison measures, and where its data comes from per source. The
configuration schema, data loading, scoring, the records, Table 1, the comparisons and the
plots ask `TASKS`; adding a task is one `register(Task(...))` below and a test.

Protocols: `reference` reproduces the reference study on purpose: it trains on the bare
answer with no system prompt, evaluates with a system prompt demanding `\\boxed{}`, places
the system message after the user message, and glues the SQuAD context straight onto the
question. `corrected` trains on exactly the messages evaluation sends (system first,
`\\boxed{}` targets), so a fine-tuned model is scored on the format it learned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import data, scoring
from .errors import ConfigError

SYSTEM_PROMPTS = {  # the reference study's prompts, verbatim
    "arc": (
        "You are taking a multiple-choice test.\n"
        "Each question will have exactly 4 options: A, B, C or D.\n"
        "Read the question and choose the correct answer.\n"
        "Output only the letter of the correct answer inside \\boxed{}, like this: \\boxed{C}"
    ),
    "squad_v2": (
        "You are answering a question based on a passage.\n"
        "Read the context carefully and provide the exact answer span from the passage.\n"
        "Do not add extra words or explanations.\n"
        "Output your answer inside \\boxed{}, like this: \\boxed{Einstein}"
    ),
    "openmath": (
        "You are solving math problems.\n"
        "Read each problem carefully and provide only the final numeric answer.\n"
        "Output your answer inside \\boxed{}, like this: \\boxed{42}\n"
        "Do not include any explanation or intermediate steps."
    ),
}
# The corrected protocol says what to write for an unanswerable SQuAD v2 question.
UNANSWERABLE_HINT = "\nIf the passage does not contain the answer, output \\boxed{unanswerable}."
UNANSWERABLE = "unanswerable"


# The corrected protocol says what to write for an unanswerable SQuAD v2 question.
UNANSWERABLE_HINT = "\nIf the passage does not contain the answer, output \\boxed{unanswerable}."
UNANSWERABLE = "unanswerable"


@dataclass(frozen=True)
class Measure:
    """A per-item quantity the comparisons can pair across models: where each scoring keeps it
    in the items file (column, factor to the measure's unit; None: that scoring has none).
    A `macro_f1` measure reads class labels instead: `classes(frame, scoring)` gives each
    item's gold and predicted class codes (-1: none), over `class_labels[scoring]` (the
    reference scoring's rule: only its classes count, and the mean is over all of them)."""

    name: str
    label: str
    unit: str
    columns: Mapping[str, tuple[str | None, float]] = field(default_factory=dict)
    higher_is_better: bool = True
    statistic: str = "mean"  # mean | macro_f1
    digits: int = 1
    class_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per scoring
    classes: Callable | None = None
    recompute: Callable | None = None  # items -> the column, for items files written before it existed
    words: str = ""  # the unit of a difference in prose ("F1 points")
    short: str = ""  # the measure in a table cell ("F1 %")


@dataclass(frozen=True)
class Column:
    """A Table 1 column a task adds besides its efficacy and latency: its header in the HTML
    table, digits, which end is best (None: not ranked), the column it is a count out of
    (shown "k/n"), and whether it shows at all (a denominator may only feed another)."""

    name: str
    header: str
    digits: int
    best_is_max: bool | None = None
    out_of: str | None = None
    shown: bool = True


@dataclass(frozen=True)
class DataFiles:
    """Where a task's rows come from, per data source. Builders turn one record of a schema
    (`reference`: the study's subsets; `hf`: the Hugging Face schema) into the task's row."""

    reference_file: str  # data/reference-study/{split}-<this>.parquet
    hf_files: Mapping[str, tuple[str, ...]]  # split -> files in data/hf/
    hub: tuple[str, str | None, Mapping[str, str]]  # (dataset id, config name, split per project split)
    builders: Mapping[str, Callable[[dict, str, int], dict]]
    hf_rows: Mapping[str, slice] = field(default_factory=dict)  # split -> the rows of the files it takes


@dataclass(frozen=True)
class Task:
    name: str  # in configurations and run names: lowercase, '_' allowed, no '-'
    label: str  # in tables, plots and answers
    column: str  # prefix of its Table 1 columns (the reference layout's: arc, openmath, squad)
    system_prompt: str  # the reference study's, verbatim
    user_content: Callable[[dict, str], str]  # (row, protocol) -> the user message
    gold: Callable[[dict], Any]  # row -> what scoring compares against
    answer: Callable[[dict, str], str]  # (row, protocol) -> the answer a training row teaches
    parse: Callable[[str], tuple[object, bool]]  # the corrected reading of a reply: (value, parsed_ok)
    score_item: Callable  # scoring.score_* : one reply's row of the items file
    item_columns: Mapping[str, str]  # the task's own item columns and their dtypes
    summarize: Callable  # scoring.summarize_* : corrected metrics over the items
    reference_metrics: Callable  # scoring.reference_* : the study's metrics (its keys, units)
    reference_units: Mapping[str, str]
    headline: tuple[str, bool]  # corrected metric named in records, higher is better
    published: tuple[str, ...]  # the metrics the reference study published per run
    efficacy: Mapping[str, tuple[str, float]]  # scoring -> (metric key, factor to Table 1's unit)
    efficacy_column: str  # its Table 1 column
    efficacy_header: tuple[str, int]  # that column's header in the HTML table, and digits
    higher_is_better: bool  # of the Table 1 efficacy column
    efficacy_label: str  # the plots' axis label of that column
    count_metric: tuple[str, Mapping[str, tuple[str, float]]]  # (measure, scoring -> (key, factor to 0..1))
    measures: tuple[Measure, ...]  # per-item measures of the task
    efficacy_measures: tuple[str, ...]  # those that measure efficacy, most preferred first
    data: DataFiles
    corrected_hint: str = ""  # appended to the system prompt in the corrected protocol
    reference_training_task: bool = False  # the reference study trained on it (its Table 1 blocks come first)
    summary_columns: tuple[str, ...] = ()  # item columns `summarize` needs
    table1_extra: tuple[Column, ...] = ()  # further Table 1 columns, after the efficacy column
    table1_figures: Callable[[dict, str], dict] | None = None  # (record, scoring) -> further figures of a record
    record_figures: tuple[str, ...] = ()  # the names of those figures (the Table 1 columns and any others)
    cluster: Callable[[dict], str] = lambda row: str(row["id"])  # items that share a cluster are not independent

    @property
    def latency_column(self) -> str:
        return f"{self.column}_latency_s"

    @property
    def block(self) -> str:
        return f"Trained on {self.label}"


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if "-" in task.name or task.name != task.name.lower() or not task.name.replace("_", "").isalnum():
        raise ValueError(f"task name {task.name!r}: lowercase letters, digits and '_' only (it is part of run names)")
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered already")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name]


# --- how a row becomes messages (every task) ----------------------------------------------------


def system_prompt(task: str, protocol: str) -> str:
    spec = get_task(task)
    return spec.system_prompt + (spec.corrected_hint if protocol == "corrected" else "")


def user_content(task: str, row: dict, protocol: str) -> str:
    return get_task(task).user_content(row, protocol)


def gold(task: str, row: dict):
    """The value scoring compares against: a label, a number, or the list of gold spans."""
    return get_task(task).gold(row)


def target(task: str, row: dict, protocol: str) -> str:
    """The assistant message a training row teaches: the bare answer as the reference study
    stored it, or (corrected) the boxed answer evaluation asks for."""
    answer = get_task(task).answer(row, protocol)
    return answer if protocol == "reference" else f"\\boxed{{{answer}}}"


def eval_messages(task: str, row: dict, protocol: str) -> list[dict]:
    user = {"role": "user", "content": user_content(task, row, protocol)}
    system = {"role": "system", "content": system_prompt(task, protocol)}
    return [user, system] if protocol == "reference" else [system, user]


def train_example(task: str, row: dict, protocol: str) -> dict:
    """A TRL prompt-completion row (conversational); TRL puts the loss on the completion only."""
    if protocol == "reference":
        prompt = [{"role": "user", "content": user_content(task, row, protocol)}]
    else:
        prompt = eval_messages(task, row, protocol)
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": target(task, row, protocol)}]}


def _format_number(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def passage_cluster(context: str) -> str:
    """A short stable name of a passage (the first 12 hex digits of its SHA-1): questions on one
    passage share it, as they are not independent items."""
    return hashlib.sha1(context.encode("utf-8")).hexdigest()[:12]


def _percent(name: str) -> tuple[str, float]:
    return (name, 100.0)


def _class_codes(values, labels) -> list[int]:
    lookup = {c: i for i, c in enumerate(labels)}
    return [lookup.get(v, -1) if isinstance(v, str) else -1 for v in values]


def _arc_classes(frame, scoring_name: str):
    """Gold and predicted ARC classes per item, read as the scoring reads them (None: the
    items file lacks what that scoring needs)."""
    import pandas as pd

    if scoring_name == "reference":
        if "gold" not in frame.columns or not frame["gold"].notna().any() or "ref_parsed" not in frame.columns:
            return None
        gold, pred = frame["gold"].map(scoring._ref_arc_gold), frame["ref_parsed"].map(lambda p: p or None)
    else:
        if (
            "gold_letter" not in frame.columns
            or not frame["gold_letter"].notna().any()
            or "parsed" not in frame.columns
        ):
            return None
        gold, pred = frame["gold_letter"], frame["parsed"].where(frame["parsed_ok"].astype(bool))
    labels = scoring.ARC_OPTION_LETTERS
    return pd.DataFrame({"g": _class_codes(gold, labels), "p": _class_codes(pred, labels)}, index=frame.index)


# --- the registry ------------------------------------------------------------------------------

register(
    Task(
        name="arc",
        label="ARC",
        column="arc",
        system_prompt=SYSTEM_PROMPTS["arc"],
        user_content=lambda row, protocol: row["question"],
        gold=lambda row: row["answer"],
        answer=lambda row, protocol: str(row["answer"]),
        parse=scoring.parse_arc,
        score_item=scoring.score_arc,
        item_columns={"gold_letter": "object"},
        summarize=scoring.summarize_arc,
        summary_columns=("parsed", "gold_letter"),
        reference_metrics=scoring.reference_arc,
        reference_units=scoring.REFERENCE_METRIC_UNITS["arc"],
        headline=("macro_f1", True),
        published=("macro_f1",),
        efficacy={"reference": ("macro_f1", 1.0), "corrected": ("macro_f1", 1.0)},
        efficacy_column="arc_f1",
        efficacy_header=("F1 ↑", 4),
        higher_is_better=True,
        efficacy_label="ARC macro-F1 ↑",
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
                class_labels={"corrected": scoring.ARC_OPTION_LETTERS, "reference": scoring.ARC_LETTERS},
                classes=_arc_classes,
            ),
            Measure(
                "arc_accuracy",
                "ARC accuracy",
                "%",
                {"corrected": _percent("score"), "reference": _percent("ref_score")},
                words="accuracy points",
                short="accuracy %",
            ),
        ),
        efficacy_measures=("arc_macro_f1", "arc_accuracy"),
        data=DataFiles(
            reference_file="ai2_arc",
            hf_files={"train": ("arc_easy_train.jsonl",), "test": ("arc_easy_test.jsonl",)},
            hub=("allenai/ai2_arc", "ARC-Challenge", {"train": "train", "test": "test"}),
            builders={"reference": data.arc_reference, "hf": data.arc_hf},
        ),
    )
)


def _openmath_figures(record: dict, scoring_name: str) -> dict:
    """Parse count beside AbsDiff (which averages parsed replies only), and the accuracies over
    every item (percent)."""
    metrics = record.get("metrics") or {}
    n = float(record.get("n_items") or "nan")
    if scoring_name == "reference":
        ref = metrics.get("reference") or {}
        # the study's AbsDiff averages float()-parsed boxes; published: the share of replies with a box
        return {
            "openmath_n_parsed": _num(ref.get("format_success_rate")) * n / 100,
            "openmath_n": n,
            "openmath_accuracy": _num(ref.get("accuracy")),
            "openmath_math_verify": float("nan"),
        }
    corrected = metrics.get("corrected") or {}
    return {
        "openmath_n_parsed": _num(corrected.get("parse_rate")) * n,
        "openmath_n": n,
        "openmath_accuracy": 100 * _num(corrected.get("accuracy")),
        "openmath_math_verify": 100 * _num(corrected.get("math_verify_accuracy")),
        "math_verify_agreement": _num(corrected.get("math_verify_agreement")),
    }


def _num(value) -> float:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        return float("nan")


register(
    Task(
        name="openmath",
        label="OpenMath",
        column="openmath",
        system_prompt=SYSTEM_PROMPTS["openmath"],
        user_content=lambda row, protocol: row["question"],
        gold=lambda row: row["answer"],
        # the reference stored OpenMath answers as floats: "45.0"
        answer=lambda row, protocol: str(row["answer"]) if protocol == "reference" else _format_number(row["answer"]),
        parse=scoring.parse_openmath,
        score_item=scoring.score_openmath,
        item_columns={"abs_diff": "float", "math_verify_ok": "bool"},
        summarize=scoring.summarize_openmath,
        summary_columns=("abs_diff",),
        reference_metrics=scoring.reference_openmath,
        reference_units=scoring.REFERENCE_METRIC_UNITS["openmath"],
        headline=("mean_abs_diff", False),
        published=("avg_abs_diff",),
        efficacy={"reference": ("avg_abs_diff", 1.0), "corrected": ("mean_abs_diff", 1.0)},
        efficacy_column="openmath_absdiff",
        efficacy_header=("AbsDiff ↓", 2),
        higher_is_better=False,
        efficacy_label="OpenMath mean |diff| ↓",
        count_metric=("openmath_accuracy", {"reference": ("accuracy", 0.01), "corrected": ("accuracy", 1.0)}),
        measures=(
            Measure(
                "openmath_accuracy",
                "OpenMath exact-match accuracy",
                "%",
                {"corrected": _percent("score"), "reference": _percent("ref_score")},
                words="accuracy points",
                short="accuracy %",
            ),
            Measure(
                "openmath_math_verify",
                "OpenMath equivalence accuracy (math-verify)",
                "%",
                {"corrected": _percent("math_verify_ok"), "reference": (None, 100.0)},
                recompute=scoring.openmath_math_verify,
                words="equivalence points",
                short="equivalence %",
            ),
        ),
        efficacy_measures=("openmath_accuracy",),
        table1_extra=(
            Column("openmath_n_parsed", "Parsed", 0, out_of="openmath_n"),  # AbsDiff averages these only
            Column("openmath_n", "Items", 0, shown=False),
            Column("openmath_accuracy", "Acc. % ↑", 1, best_is_max=True),
            Column("openmath_math_verify", "Equiv. % ↑", 1, best_is_max=True),
        ),
        table1_figures=_openmath_figures,
        record_figures=(
            "openmath_n_parsed",
            "openmath_n",
            "openmath_accuracy",
            "openmath_math_verify",
            "math_verify_agreement",
        ),
        reference_training_task=True,
        data=DataFiles(
            reference_file="OpenMathInstruct-2",
            # OpenMathInstruct-2 ships only a train sample: its first 800 rows train, the rest is held out
            hf_files={"train": ("openmathinstruct2_train.jsonl",), "test": ("openmathinstruct2_train.jsonl",)},
            hf_rows={"train": slice(0, 800), "test": slice(800, None)},
            hub=("nvidia/OpenMathInstruct-2", None, {"train": "train_1M", "test": "train_1M"}),
            builders={"reference": data.openmath_reference, "hf": data.openmath_hf},
        ),
    )
)


def _squad_user(row: dict, protocol: str) -> str:
    if protocol == "reference":
        return row["question"] + row["context"]  # as the reference code did: no separator
    return f"Passage: {row['context']}\n\nQuestion: {row['question']}"


def _squad_answer(row: dict, protocol: str) -> str:
    if row["answers"]:
        return row["answers"][0]
    return "" if protocol == "reference" else UNANSWERABLE


register(
    Task(
        name="squad_v2",
        label="SQuAD v2",
        column="squad",
        system_prompt=SYSTEM_PROMPTS["squad_v2"],
        corrected_hint=UNANSWERABLE_HINT,
        user_content=_squad_user,
        gold=lambda row: row["answers"],
        answer=_squad_answer,
        parse=scoring._squad_prediction,
        score_item=scoring.score_squad,
        item_columns={"em": "float", "has_answer": "bool"},
        summarize=scoring.summarize_squad,
        summary_columns=("em", "has_answer"),
        reference_metrics=scoring.reference_squad,
        reference_units=scoring.REFERENCE_METRIC_UNITS["squad_v2"],
        headline=("f1", True),
        published=("EM", "F1", "HasAns_EM", "HasAns_F1", "NoAns_Accuracy", "AvNA_Accuracy"),
        efficacy={"reference": ("F1", 1.0), "corrected": ("f1", 100.0)},
        efficacy_column="squad_f1",
        efficacy_header=("F1 ↑", 2),
        higher_is_better=True,
        efficacy_label="SQuAD v2 F1 (%) ↑",
        count_metric=("squad_em", {"reference": ("EM", 0.01), "corrected": ("em", 1.0)}),
        measures=(
            Measure(
                "squad_f1",
                "SQuAD v2 F1",
                "%",
                {"corrected": _percent("score"), "reference": _percent("ref_score")},
                words="F1 points",
                short="F1 %",
            ),
            Measure(
                "squad_em",
                "SQuAD v2 exact match",
                "%",
                {"corrected": _percent("em"), "reference": (None, 100.0)},
                words="EM points",
                short="EM %",
            ),
        ),
        efficacy_measures=("squad_f1", "squad_em"),
        cluster=lambda row: passage_cluster(row["context"]),
        reference_training_task=True,
        data=DataFiles(
            reference_file="squad_v2",
            hf_files={"train": ("squad_v2_train.jsonl",), "test": ("squad_v2_validation.jsonl",)},
            hub=("rajpurkar/squad_v2", None, {"train": "train", "test": "validation"}),
            builders={"reference": data.squad_reference, "hf": data.squad_hf},
        ),
    )
)
