"""Parameters are validated before anything loads, with messages that say what to fix."""

from __future__ import annotations

import pytest
import yaml

from peftlab.config import SCHEMA, resolve_config, train_hash
from peftlab.core.errors import ConfigError
from peftlab.core.paths import params_dir
from peftlab.methods.registry import METHODS, effective_alpha, effective_learning_rate
from peftlab.tasks.registry import TASKS

ALLOWED_TASKS = ", ".join(TASKS)


def test_defaults_document_every_key_with_a_comment():
    text = (params_dir() / "defaults.yaml").read_text()
    keys = yaml.safe_load(text)
    assert set(keys) == set(SCHEMA)
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")) and ":" in line:
            assert "#" in line, f"defaults.yaml line without a comment: {line!r}"


def test_defaults_resolve_and_out_dir_is_absolute():
    config = resolve_config()
    assert config["method"] == "lora" and config["base_model"] == "embedded"
    assert config["out_dir"].startswith("/")


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"methd": "lora"}, ["unknown config key", "methd", "method"]),
        ({"method": "qlora"}, ["'method'", "'qlora'", "full, lora, dora, vera"]),
        ({"train_task": "boolq"}, ["'train_task'", "'boolq'", ALLOWED_TASKS]),
        ({"eval_tasks": ["arc", "mmlu"]}, ["'eval_tasks'", "'mmlu'", ALLOWED_TASKS]),
        ({"eval_tasks": []}, ["'eval_tasks'", "non-empty list"]),
        ({"rank": 0}, ["'rank'", "0", "integer >= 1"]),
        ({"rank": -4}, ["'rank'", "-4"]),
        ({"rank": "16"}, ["'rank'", "'16'", "integer"]),
        ({"rank": 8.0}, ["'rank'", "8.0", "integer"]),
        ({"n_train": 0}, ["'n_train'", "integer >= 1", "or all"]),
        ({"n_eval": "everything"}, ["'n_eval'", "'everything'", "integer >= 1, or all"]),
        (
            {"data_source": "allenai/ai2_arc"},
            ["'data_source'", "'allenai/ai2_arc'", "reference, hf, hub, or an existing directory"],
        ),
        ({"n_eval": -1}, ["'n_eval'", "integer >= 1"]),
        ({"learning_rate": 0}, ["'learning_rate'", "> 0"]),
        ({"learning_rate": "fast"}, ["'learning_rate'", "'fast'"]),
        ({"protocol": "paper"}, ["'protocol'", "reference, corrected"]),
        ({"gradient_checkpointing": "yes"}, ["'gradient_checkpointing'", "true or false"]),
        ({"dropout": 1.5}, ["'dropout'", "< 1"]),
        ({"batch_size": True}, ["'batch_size'", "integer"]),
        ({"grad_accum": "eight"}, ["'grad_accum'", "auto or an integer >= 1"]),
        ({"padding_free": "yes"}, ["'padding_free'", "auto or true or false"]),
    ],
)
def test_bad_parameters_are_rejected_with_key_value_and_allowed(overrides, words):
    with pytest.raises(ConfigError) as error:
        resolve_config(overrides=overrides)
    for word in words:
        assert word in str(error.value)


def test_run_file_is_merged_and_validated(tmp_path):
    good = tmp_path / "run.yaml"
    good.write_text("method: dora\nrank: 4\n")
    config = resolve_config(file=good, overrides={"rank": 8})
    assert (config["method"], config["rank"]) == ("dora", 8)
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: dora\nrnak: 4\n")
    with pytest.raises(ConfigError, match="rnak"):
        resolve_config(file=bad)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(file=tmp_path / "missing.yaml")


def test_comma_separated_task_list_from_the_command_line():
    assert resolve_config(overrides={"eval_tasks": "arc,squad_v2"})["eval_tasks"] == ["arc", "squad_v2"]


def test_protocol_defaults_for_learning_rate_and_alpha():
    ref = resolve_config(overrides={"protocol": "reference", "method": "vera", "rank": 256})
    assert effective_learning_rate(ref) == 1e-5 and effective_alpha(ref) == 16
    cor = resolve_config(overrides={"protocol": "corrected", "method": "vera", "rank": 256})
    assert effective_learning_rate(cor) == METHODS["vera"].learning_rate and effective_alpha(cor) == 256
    explicit = resolve_config(overrides={"learning_rate": 3e-4, "alpha": 32})
    assert effective_learning_rate(explicit) == 3e-4 and effective_alpha(explicit) == 32


def test_config_hash_changes_with_training_settings_only():
    a = resolve_config()
    assert train_hash(a) == train_hash(dict(a, out_dir="/elsewhere", n_eval=7, eval_tasks=["arc"]))
    assert train_hash(a) != train_hash(dict(a, rank=32))


def test_a_run_identity_holds_its_methods_keys_and_resolved_learning_rate():
    full = resolve_config(overrides={"method": "full"})
    # a rank or adapter setting means nothing to full fine-tuning: same run
    assert train_hash(full) == train_hash(dict(full, rank=64, dropout=0.3))
    vera = resolve_config(overrides={"method": "vera"})
    assert train_hash(vera) != train_hash(dict(vera, vera_d_initial=0.5))
    lora = resolve_config(overrides={"method": "lora"})
    assert train_hash(lora) == train_hash(dict(lora, vera_d_initial=0.5))
    # the default learning rate is part of the identity once resolved
    assert train_hash(lora) == train_hash(dict(lora, learning_rate=METHODS["lora"].learning_rate))
    assert train_hash(lora) != train_hash(dict(lora, learning_rate=1e-3))
