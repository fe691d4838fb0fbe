"""What a task is: its prompting, its scoring, its data and how Table 1 presents it.

A task module (`tasks/arc.py`, `tasks/openmath.py`, ...) builds one `Task` from these parts and
registers it (`tasks.registry.register`). Everything else asks the registry, never a task by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SPLITS = ("train", "test")
ANSWER_KINDS = ("choice", "number", "span")


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
    chance: str | None = None  # items column: the per-item score of a blind guess (0..1); None: the floor, 0
    role: str = "efficacy"  # efficacy (what the model knows) | format (whether it answered as asked) | cost
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
    flag_above: float | None = None  # a value above it is flagged in the table (a share of replies cut at the cap)


@dataclass(frozen=True)
class DataSpec:
    """Where a task's rows come from, per data source. Builders turn one record of a schema
    (`reference`: the study's subsets; `hf`: the Hugging Face schema) into the task's row."""

    hf_files: Mapping[str, tuple[str, ...]]  # split -> files in data/hf/
    hub: tuple[str, str | None, Mapping[str, str]]  # (dataset id, config name, split per project split)
    builders: Mapping[str, Callable[[dict, str, int], dict]]
    reference_file: str | None = None  # data/reference-study/{split}-<this>.parquet (None: the study had none)
    hf_rows: Mapping[str, slice] = field(default_factory=dict)  # split -> the rows of the files it takes


@dataclass(frozen=True)
class Prompting:
    """How a row becomes chat messages and what a training row teaches."""

    system_prompt: str  # the reference study's, verbatim
    user_content: Callable[[dict, str], str]  # (row, protocol) -> the user message
    answer: Callable[[dict, str], str]  # (row, protocol) -> the answer a training row teaches
    corrected_hint: str = ""  # appended to the system prompt in the corrected protocol


@dataclass(frozen=True)
class Scoring:
    """How replies are read and scored, per item and over a run, under both protocols."""

    answer_kind: str  # choice (a letter among options) | number | span (free text): what chance means for it
    gold: Callable[[dict], Any]  # row -> what scoring compares against
    parse: Callable[[str], tuple[object, bool]]  # the corrected reading of a reply: (value, parsed_ok)
    score_item: Callable  # (reply, reference box, value, parsed_ok, gold) -> one row of the items file
    item_columns: Mapping[str, str]  # the task's own item columns and their dtypes
    summarize: Callable  # (items, scores, parsed_ok) -> corrected metrics over the items
    reference_metrics: Callable  # (boxes, golds, rounded) -> the study's metrics (its keys, units)
    reference_units: Mapping[str, str]
    headline: tuple[str, bool]  # corrected metric named in records, higher is better
    published: tuple[str, ...]  # the metrics the reference study published per run
    efficacy: Mapping[str, tuple[str, float]]  # scoring -> (metric key, factor to Table 1's unit)
    count_metric: tuple[str, Mapping[str, tuple[str, float]]]  # (measure, scoring -> (key, factor to 0..1))
    measures: tuple[Measure, ...]  # per-item measures of the task
    efficacy_measures: tuple[str, ...]  # those that measure efficacy, most preferred first
    summary_columns: tuple[str, ...] = ()  # item columns `summarize` needs
    cluster: Callable[[dict], str] = lambda row: str(row["id"])  # items that share a cluster are not independent
    # The answer where a reader would find it, whatever the format: (reply, gold) -> (reading, score 0..1).
    flexible: Callable[[str, Any], tuple[str, float]] | None = None
    # Multiple choice without generation: row -> (context, option texts), each option scored as a continuation.
    multiple_choice: Callable[[dict], tuple[str, list[str]]] | None = None
    chance: Callable[[dict], float] = lambda row: 0.0  # row -> a blind guess's expected score (1/options)


@dataclass(frozen=True)
class Presentation:
    """The task's Table 1 columns, which the report lays out and ranks."""

    column: str  # prefix of its Table 1 columns (the reference layout's: arc, openmath, squad)
    efficacy_column: str  # its efficacy column
    efficacy_header: tuple[str, int]  # that column's header in the HTML table, and digits
    higher_is_better: bool  # of the efficacy column
    efficacy_label: str  # the plots' axis label of that column
    table1_extra: tuple[Column, ...] = ()  # further Table 1 columns, after the efficacy column
    table1_figures: Callable[[dict, str], dict] | None = None  # (record, scoring) -> further figures of a record
    record_figures: tuple[str, ...] = ()  # the names of those figures (the Table 1 columns and any others)


@dataclass(frozen=True)
class Task:
    name: str  # in configurations and run names: lowercase, '_' allowed, no '-'
    label: str  # in tables, plots and answers
    prompting: Prompting
    scoring: Scoring
    data: DataSpec
    presentation: Presentation
    reference_training_task: bool = False  # the reference study trained on it (its Table 1 blocks come first)

    def __post_init__(self) -> None:
        if self.scoring.answer_kind not in ANSWER_KINDS:
            raise ValueError(f"task {self.name!r}: answer_kind {self.scoring.answer_kind!r}; allowed: {ANSWER_KINDS}")

    @property
    def latency_column(self) -> str:
        return f"{self.presentation.column}_latency_s"

    @property
    def block(self) -> str:
        return f"Trained on {self.label}"
