"""One parameter vocabulary for notebooks, study files and the library.

`params/defaults.yaml` holds every run key with its default; `resolve_config` merges
defaults <- a run/study file <- explicit overrides and validates the result before any
model or data is touched. Errors name the key, the bad value and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

METHODS = ("full", "lora", "dora", "vera")
TASKS = ("arc", "openmath", "squad_v2")
PROTOCOLS = ("reference", "corrected")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")

# The reference study's shared hyperparameters (docs/protocols.md), applied by protocol=reference.
REFERENCE_LEARNING_RATE = 1e-5
REFERENCE_ALPHA = 16


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


def repo_root() -> Path:
    """The project's root: $PEFTLAB_ROOT, else the checkout this package lives in."""
    env = os.environ.get("PEFTLAB_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[2]


def params_dir() -> Path:
    return repo_root() / "params"


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
        from .models import architectures

        if value.removeprefix("random:") not in architectures():
            _fail(key, value, "random:<architecture> with a shipped architecture: "
                  + ", ".join(f"random:{name}" for name in architectures()))
        return value
    path = Path(value).expanduser()
    looks_like_path = value.startswith((".", "/", "~")) or value.count("/") > 1
    if looks_like_path and not path.is_dir():
        _fail(key, value, "tiny, embedded, random:qwen3-0.6b, an existing checkpoint directory, or a Hub id such as Qwen/Qwen3-0.6B")
    if not looks_like_path and not HUB_ID.match(value):
        _fail(key, value, "tiny, embedded, random:qwen3-0.6b, an existing checkpoint directory, or a Hub id such as Qwen/Qwen3-0.6B")
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
    "lr_full": _number(0, inclusive=False),
    "lr_lora": _number(0, inclusive=False),
    "lr_dora": _number(0, inclusive=False),
    "lr_vera": _number(0, inclusive=False),
    "epochs": _number(0, inclusive=False),
    "batch_size": _int(1),
    "grad_accum": _int(1),
    "max_length": _int(8),
    "warmup_ratio": _number(0, below=1),
    "weight_decay": _number(0),
    "max_grad_norm": _number(0, inclusive=False),
    "gradient_checkpointing": _bool,
    "group_by_length": _bool,
    "padding_free": _bool,
    "mixed_precision": _choice(("auto", "bf16", "no")),
    "seed": _int(0),
    "train_task": _choice(TASKS),
    "n_train": _int(1),
    "data_source": _text,
    "eval_tasks": _str_list(TASKS),
    "n_eval": _int(1),
    "max_new_tokens": _int(1),
    "eval_batch_size": _int(1),
    "n_latency": _int(0),
    "latency_repeats": _int(1),
    "out_dir": _text,
    "force": _bool,
    "fault": _fault,
}

# Keys that decide what a training run computes; the run's identity hash covers these.
TRAIN_IDENTITY_KEYS = (
    "base_model", "dtype", "protocol", "method", "rank", "alpha", "dropout", "target_modules",
    "vera_d_initial", "learning_rate", "epochs", "batch_size", "grad_accum", "max_length",
    "warmup_ratio", "weight_decay", "max_grad_norm", "gradient_checkpointing", "group_by_length", "padding_free", "mixed_precision", "seed",
    "train_task", "n_train", "data_source",
)
# Keys that decide what an evaluation computes (besides the model evaluated). latency_repeats
# is left out on purpose: more timing passes refine the same figures, and a finished
# evaluation stays reusable.
EVAL_IDENTITY_KEYS = ("dtype", "protocol", "data_source", "n_eval", "max_new_tokens", "eval_batch_size", "n_latency")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys to values")
    return data


def load_defaults() -> dict[str, Any]:
    defaults = _read_yaml(params_dir() / "defaults.yaml")
    if set(defaults) != set(SCHEMA):
        raise ConfigError(
            f"params/defaults.yaml and the schema disagree: {sorted(set(defaults) ^ set(SCHEMA))}"
        )
    return defaults


def validate(values: Mapping[str, Any], *, source: str = "parameters") -> dict[str, Any]:
    """Check every key and value; return a validated copy. Unknown keys are errors."""
    unknown = sorted(set(values) - set(SCHEMA))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown} in {source}; allowed keys: {', '.join(sorted(SCHEMA))}"
        )
    return {key: SCHEMA[key](key, value) for key, value in values.items()}


def resolve_config(*, file: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None,
                   ) -> dict[str, Any]:
    """defaults <- run file <- overrides, validated. Nothing is loaded before this passes."""
    config = load_defaults()
    if file:
        config.update(validate(_read_yaml(Path(file)), source=str(file)))
    if overrides:
        config.update(validate(dict(overrides), source="overrides"))
    config = validate(config, source="the merged configuration")
    config["out_dir"] = str(resolve_path(config["out_dir"]))
    return config


def resolve_path(path: str | os.PathLike) -> Path:
    """Relative paths mean the same from a notebook (cwd notebooks/) and from the shell."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else repo_root() / path


def effective_learning_rate(config: Mapping[str, Any]) -> float:
    """An explicit learning_rate wins; else the protocol's default for the method."""
    if config["learning_rate"] is not None:
        return float(config["learning_rate"])
    if config["protocol"] == "reference":
        return REFERENCE_LEARNING_RATE
    return float(config[f"lr_{config['method']}"])


def effective_alpha(config: Mapping[str, Any]) -> float:
    """Reference: alpha 16 whatever the rank (the update is scaled by 16/r). Corrected: alpha = r."""
    if config["alpha"] is not None:
        return float(config["alpha"])
    return float(REFERENCE_ALPHA if config["protocol"] == "reference" else config["rank"])


def config_hash(config: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """A short stable hash of the keys that decide a result."""
    subset = {key: config[key] for key in keys if key in config}
    blob = json.dumps(subset, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
