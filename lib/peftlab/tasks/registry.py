"""The task registry, and what every task does the same way: its messages and its data.

A task lives in one module of this package (`arc.py`, `openmath.py`, `squad_v2.py`, ...) that
builds its `Task` and calls `register`; the package imports every module in its folder, so a new
task is one new module. The configuration schema, data loading, scoring, the records, Table 1,
the comparisons and the plots ask `TASKS`.

Protocols: `reference` reproduces the reference study on purpose: it trains on the bare
answer with no system prompt, evaluates with a system prompt demanding `\\boxed{}`, places
the system message after the user message, and glues the SQuAD context straight onto the
question. `corrected` trains on exactly the messages evaluation sends (system first,
`\\boxed{}` targets), so a fine-tuned model is scored on the format it learned.
"""

from __future__ import annotations

from peftlab.core.errors import ConfigError
from peftlab.tasks import data
from peftlab.tasks.base import Task
from peftlab.tasks.data import DataError

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
    prompting = get_task(task).prompting
    return prompting.system_prompt + (prompting.corrected_hint if protocol == "corrected" else "")


def user_content(task: str, row: dict, protocol: str) -> str:
    return get_task(task).prompting.user_content(row, protocol)


def gold(task: str, row: dict):
    """The value scoring compares against: a label, a number, or the list of gold spans."""
    return get_task(task).scoring.gold(row)


def target(task: str, row: dict, protocol: str) -> str:
    """The assistant message a training row teaches: the bare answer as the reference study
    stored it, or (corrected) the boxed answer evaluation asks for."""
    answer = get_task(task).prompting.answer(row, protocol)
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


# --- its data ---------------------------------------------------------------------------------


def _spec(task: str):
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    return TASKS[task].data


def load_rows(*, task: str, split: str, source: str = "reference", n: int | str | None = None) -> list[dict]:
    """The first `n` validated rows of a task's split (all rows when n is None or "all").
    Asking for more rows than the split has is an error, never a silent smaller sample."""
    return data.load_split(_spec(task), task=task, split=split, source=source, n=n)


def available_rows(*, task: str, split: str, source: str) -> tuple[int, str] | None:
    return data.available_rows(_spec(task), task=task, split=split, source=source)


def check_sample_counts(config: dict) -> None:
    """n_train and n_eval fit the splits they sample (where the files tell without loading):
    a larger number is a ConfigError naming the rows available, never a silently smaller run.
    A task the reference study had no data for cannot read `data_source: reference`."""
    wanted = [("n_train", "train", [config["train_task"]]), ("n_eval", "test", list(config["eval_tasks"]))]
    source = config["data_source"]
    for key, split, tasks in wanted:
        for task in tasks:
            if source == "reference" and _spec(task).reference_file is None:
                raise ConfigError(
                    f"config key 'data_source': the reference study has no {task} data; "
                    "allowed for this task: hf, hub, or a directory"
                )
            n = config[key]
            if n == "all":
                continue
            found = available_rows(task=task, split=split, source=source)
            if found is not None and n > found[0]:
                raise ConfigError(data.too_many_rows(key, n, found[0], task, split, source, found[1]))
