"""One parameter vocabulary for notebooks, study files and the library.

`params/defaults.yaml` holds every run key with its default; `resolve_config` merges
defaults <- a run/study file <- explicit overrides and validates the result before any
model or data is touched. Errors name the key, the bad value and what is allowed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from peftlab.core.errors import ConfigError
from peftlab.core.hashing import config_hash
from peftlab.core.paths import params_dir, resolve_path
from peftlab.core.yamlio import read_yaml
from peftlab.methods.registry import METHODS as METHOD_REGISTRY
from peftlab.methods.registry import (
    identity,
)  # noqa: F401
from peftlab.models.loading import architectures
from peftlab.tasks.registry import TASKS as TASK_REGISTRY
from peftlab.tasks.registry import check_sample_counts

METHODS = tuple(METHOD_REGISTRY)
TASKS = tuple(TASK_REGISTRY)
PROTOCOLS = ("reference", "corrected")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
DROPOUT_MASKS = ("auto", "packed", "bernoulli")  # how adapter dropout draws its masks (lean_training)
EVAL_BACKENDS = ("auto", "peftlab", "transformers")  # the engine that decodes replies for scoring (run.backends)
DATA_SOURCES = ("reference", "hf", "hub")  # or a local directory <dir>/<task>/{train,test}.jsonl
# Experiment trackers TRL's SFTTrainer reports to (`report_to`), with the package each needs.
TRACKERS = {"none": None, "tensorboard": "tensorboard", "trackio": "trackio"}


# --- validators: each returns the (possibly coerced) value or raises ConfigError -------


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config key '{key}': {value!r} is not allowed; allowed: {allowed}")


def _choice(options: tuple[str, ...]) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if not isinstance(value, str) or value not in options:
            _fail(key, value, ", ".join(options))
        return value

    return check


def _int(minimum: int) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            _fail(key, value, f"an integer >= {minimum}")
        return value

    return check


def _or_auto(check: Callable[[str, Any], Any], allowed: str) -> Callable[[str, Any], Any]:
    """`auto` (decided for the device the run trains on, `train.training_layout`) or what `check` allows."""

    def check_or_auto(key: str, value: Any) -> Any:
        if value == "auto":
            return value
        try:
            return check(key, value)
        except ConfigError:
            _fail(key, value, f"auto or {allowed}")

    return check_or_auto


def _number(minimum: float, *, inclusive: bool = True, below: float | None = None, nullable: bool = False):
    def check(key: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            ok = value >= minimum if inclusive else value > minimum
            ok = ok and (below is None or value < below)
        if not ok:
            bound = f">= {minimum}" if inclusive else f"> {minimum}"
            if below is not None:
                bound += f" and < {below}"
            _fail(key, value, f"a number {bound}" + (" or null" if nullable else ""))
        return float(value) if isinstance(value, (int, float)) else value

    return check


def _count(key: str, value: Any) -> Any:
    """A sample count: an integer >= 1, or `all` (every row of the split)."""
    if value == "all":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(key, value, "an integer >= 1, or all")
    return value


def _data_source(key: str, value: Any) -> Any:
    _text(key, value)
    if value not in DATA_SOURCES and not Path(value).expanduser().is_dir():
        _fail(key, value, "reference, hf, hub, or an existing directory laid out as <dir>/<task>/{train,test}.jsonl")
    return value


def _tracker(key: str, value: Any) -> Any:
    if not isinstance(value, str) or value not in TRACKERS:
        _fail(key, value, ", ".join(TRACKERS))
    package = TRACKERS[value]
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"config key '{key}': {value!r} needs the {package} package, which is not installed; "
            f"install it with `pip install '{package}'` (or the project's `tracking` extra), "
            "or use none"
        )
    return value


FAULT_PATTERN = re.compile(r"^(nan_loss@\d+|oom@train:\d+|kill@train:\d+|oom@evaluate)$")


def _fault(key: str, value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not FAULT_PATTERN.match(value)):
        _fail(key, value, "null, nan_loss@<step>, oom@train:<step>, kill@train:<step> or oom@evaluate")
    return value


def _base_model(key: str, value: Any) -> Any:
    """tiny, embedded, an existing directory, or a Hub id (`name` or `org/name`)."""
    _text(key, value)
    if value in ("tiny", "embedded"):
        return value
    if value.startswith("random:"):
        if value.removeprefix("random:") not in architectures():
            _fail(
                key,
                value,
                "random:<architecture> with a shipped architecture: "
                + ", ".join(f"random:{name}" for name in architectures()),
            )
        return value
    path = Path(value).expanduser()
    looks_like_path = value.startswith((".", "/", "~")) or value.count("/") > 1
    if looks_like_path and not path.is_dir():
        _fail(
            key,
            value,
            "tiny, embedded, random:qwen3-0.6b, an existing checkpoint directory, or a Hub id such as Qwen/Qwen3-0.6B",
        )
    if not looks_like_path and not HUB_ID.match(value):
        _fail(
            key,
            value,
            "tiny, embedded, random:qwen3-0.6b, an existing checkpoint directory, or a Hub id such as Qwen/Qwen3-0.6B",
        )
    return value


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _bool(key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        _fail(key, value, "true or false")
    return value


def _text(key: str, value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        _fail(key, value, "a non-empty string")
    return value


def _str_list(options: tuple[str, ...] | None) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if isinstance(value, str):  # papermill -p eval_tasks arc,squad_v2
            value = [v.strip() for v in value.split(",") if v.strip()]
        allowed = f"a non-empty list of {', '.join(options) if options else 'names'}"
        if not isinstance(value, (list, tuple)) or not value:
            _fail(key, value, allowed)
        for item in value:
            if not isinstance(item, str) or (options and item not in options):
                raise ConfigError(f"config key '{key}': item {item!r} is not allowed; allowed: {allowed}")
        if len(set(value)) != len(value):
            _fail(key, value, allowed + " without repeats")
        return list(value)

    return check


SCHEMA: dict[str, Callable[[str, Any], Any]] = {
    "base_model": _base_model,
    "dtype": _choice(DTYPES),
    "device": _choice(DEVICES),
    "protocol": _choice(PROTOCOLS),
    "method": _choice(METHODS),
    "rank": _int(1),
    "alpha": _number(0, inclusive=False, nullable=True),
    "dropout": _number(0, below=1),
    "target_modules": _str_list(None),
    "vera_d_initial": _number(0, inclusive=False),
    "learning_rate": _number(0, inclusive=False, nullable=True),
    "epochs": _number(0, inclusive=False),
    "batch_size": _or_auto(_int(1), "an integer >= 1"),
    "grad_accum": _or_auto(_int(1), "an integer >= 1"),
    "max_length": _int(8),
    "warmup_ratio": _number(0, below=1),
    "weight_decay": _number(0),
    "max_grad_norm": _number(0, inclusive=False),
    "gradient_checkpointing": _bool,
    "group_by_length": _bool,
    "padding_free": _or_auto(_bool, "true or false"),
    "mixed_precision": _choice(("auto", "bf16", "no")),
    "lm_head_positions": _choice(("labelled", "all")),
    "dropout_masks": _choice(DROPOUT_MASKS),
    "seed": _int(0),
    "train_task": _choice(TASKS),
    "n_train": _count,
    "data_source": _data_source,
    "eval_tasks": _str_list(TASKS),
    "n_eval": _count,
    "max_new_tokens": _int(1),
    "eval_batch_size": _int(1),
    "eval_backend": _choice(EVAL_BACKENDS),
    "n_latency": _int(0),
    "latency_repeats": _int(1),
    "out_dir": _text,
    "force": _bool,
    "report_to": _tracker,
    "fault": _fault,
}

# What decides a training run is the method registry's business (methods.identity): the
# shared keys, the method's own keys and the resolved learning rate.
# Keys that decide what an evaluation computes (besides the model evaluated). latency_repeats
# is left out on purpose: more timing passes refine the same figures, and a finished
# evaluation stays reusable. eval_backend is in: another engine's replies agree only up to
# float rounding, and a record says which engine wrote all of its replies.
EVAL_IDENTITY_KEYS = (
    "dtype",
    "protocol",
    "data_source",
    "n_eval",
    "max_new_tokens",
    "eval_batch_size",
    "eval_backend",
    "n_latency",
)


def load_defaults() -> dict[str, Any]:
    defaults = read_yaml(params_dir() / "defaults.yaml")
    if set(defaults) != set(SCHEMA):
        raise ConfigError(f"params/defaults.yaml and the schema disagree: {sorted(set(defaults) ^ set(SCHEMA))}")
    return defaults


def validate(values: Mapping[str, Any], *, source: str = "parameters") -> dict[str, Any]:
    """Check every key and value; return a validated copy. Unknown keys are errors."""
    unknown = sorted(set(values) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} in {source}; allowed keys: {', '.join(sorted(SCHEMA))}")
    return {key: SCHEMA[key](key, value) for key, value in values.items()}


def resolve_config(
    *,
    file: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """defaults <- run file <- overrides, validated. Nothing is loaded before this passes."""
    config = load_defaults()
    if file:
        config.update(validate(read_yaml(Path(file)), source=str(file)))
    if overrides:
        config.update(validate(dict(overrides), source="overrides"))
    config = validate(config, source="the merged configuration")
    config["out_dir"] = str(resolve_path(config["out_dir"]))
    check_sample_counts(config)
    return config


def train_hash(config: Mapping[str, Any]) -> str:
    """The identity hash of a training run (methods.identity)."""
    return config_hash(identity(config))


# --- the notebooks' parameters ------------------------------------------------------------
# notebooks/train.ipynb's parameters cell sets the keys a training run reads; notebooks/evaluate.ipynb's
# the keys an evaluation reads (evaluate.run_evaluation), besides run_dir, the model it evaluates.
# Each cell is params/defaults.yaml's sections and comments for its keys (`parameters_cell`).
EVAL_ONLY_KEYS = (
    "eval_tasks",
    "n_eval",
    "max_new_tokens",
    "eval_batch_size",
    "eval_backend",
    "n_latency",
    "latency_repeats",
)
# Set by tests and study files to inject a failure; papermill may pass it, no parameters cell shows it.
TEST_HOOKS = ("fault",)
TRAIN_NOTEBOOK_KEYS = tuple(key for key in SCHEMA if key not in EVAL_ONLY_KEYS + TEST_HOOKS)
EVAL_NOTEBOOK_KEYS = (
    "base_model",
    "dtype",
    "device",
    "protocol",
    "data_source",
    *EVAL_ONLY_KEYS,
    "out_dir",
    "force",
)
NOTEBOOK_KEYS = {"train": TRAIN_NOTEBOOK_KEYS, "evaluate": EVAL_NOTEBOOK_KEYS}
# What each notebook's parameters cell says besides the defaults: its own run folder (the training
# notebook's default run, which the evaluation notebook evaluates by default) and evaluate's run_dir.
NOTEBOOK_RUN = "outputs/adhoc/openmath-lora-r16-s0"
PARAMETERS_HEADER = (
    "# Parameters: `papermill -p <key> <value>` sets any of them (params/defaults.yaml, section by section)\n"
)
RUN_DIR_LINE = (
    "# the run whose merged model is evaluated (train.ipynb's default out_dir); '' evaluates the untuned base_model\n"
    f'run_dir = "{NOTEBOOK_RUN}"\n'
)


def notebook_parameters_cell(notebook: str) -> str:
    """The whole parameters cell of notebooks/<notebook>.ipynb (train or evaluate)."""
    cell = PARAMETERS_HEADER + "\n" + parameters_cell(NOTEBOOK_KEYS[notebook], {"out_dir": NOTEBOOK_RUN})
    section = "# --- the model evaluated ".ljust(88, "-")
    return cell + (f"\n{section}\n{RUN_DIR_LINE}" if notebook == "evaluate" else "")


def _python_literal(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_python_literal(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def parameters_cell(keys: tuple[str, ...], values: Mapping[str, Any] | None = None) -> str:
    """A notebook's parameters cell for `keys`: params/defaults.yaml's section headers and comments,
    each key as a Python assignment of its default (or of `values`' value)."""
    lines, section, written = [], None, set()
    for line in (params_dir() / "defaults.yaml").read_text().splitlines():
        if line.startswith("# ---"):
            section = line
            continue
        key = line.split(":", 1)[0]
        if key not in keys or line.startswith(("#", " ")):
            continue
        if section is not None:
            lines += ["", section] if lines else [section]
            section = None
        value = (values or {}).get(key, yaml.safe_load(line.split(":", 1)[1].split(" #", 1)[0]))
        comment = line.split(" #", 1)[1].strip() if " #" in line else ""
        # The comment above its key: papermill reads a line with a second "=" as no parameter.
        lines += [f"# {comment}"] if comment else []
        lines.append(f"{key} = {_python_literal(value)}")
        written.add(key)
    missing = [key for key in keys if key not in written]
    if missing:
        raise ConfigError(f"params/defaults.yaml has no line for {', '.join(missing)}")
    return "\n".join(lines) + "\n"


def notebook_parameters(namespace: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """`keys` as a notebook's parameters cell (and papermill's injected cell after it) set them in
    `namespace` (the notebook's globals()), for resolve_config: the cell after the parameters cell
    passes them on without naming them again. A key the cell does not set is an error, and so is a
    run key the notebook does not use (papermill only warns about parameters its cell lacks)."""
    missing = [key for key in keys if key not in namespace]
    if missing:
        raise ConfigError(
            f"the notebook's parameters cell does not set {', '.join(missing)}; its parameters are {', '.join(keys)}"
        )
    unused = [key for key in SCHEMA if key in namespace and key not in keys and key not in TEST_HOOKS]
    if unused:
        raise ConfigError(
            f"this notebook does not use the run key(s) {', '.join(unused)}; its parameters are {', '.join(keys)}"
        )
    hooks = {key: namespace[key] for key in TEST_HOOKS if key in namespace}  # passed by papermill only
    return {key: namespace[key] for key in keys} | hooks
