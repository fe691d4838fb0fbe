"""Run names: made in one place (peftlab.study.run_names), read back into their parts, and told
apart from untuned base models' runs the same way in Python and in the workflow."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from peftlab.core.errors import ConfigError
from peftlab.core.paths import repo_root
from peftlab.study.plan import load_plan
from peftlab.study.run_names import (
    TRAIN_RUN_WILDCARD,
    base_run_name,
    is_base_run,
    parse_run_name,
    short_name,
    train_run_name,
)


@pytest.mark.parametrize(
    "parts, name",
    [
        (dict(task="openmath", method="dora", rank=16, seed=0), "openmath-dora-r16-s0"),
        (dict(task="squad_v2", method="full", rank=None, seed=3), "squad_v2-full-s3"),
        (dict(task="arc", method="vera", rank=1024, seed=12), "arc-vera-r1024-s12"),
        (
            dict(task="squad_v2", method="lora", rank=8, seed=0, base_prefix="qwen3-1.7b"),
            "qwen3-1.7b-squad_v2-lora-r8-s0",
        ),
        (
            dict(task="arc", method="full", rank=None, seed=1, base_prefix="smollm2-135m-instruct"),
            "smollm2-135m-instruct-arc-full-s1",
        ),
        (dict(task="arc", method="ia3", rank=4, seed=0, base_prefix="model-r2"), "model-r2-arc-ia3-r4-s0"),
    ],
)
def test_a_train_run_name_and_its_parts_round_trip(parts, name):
    assert train_run_name(**parts) == name
    assert parse_run_name(name) == {"kind": "train", "base_prefix": "", **parts}
    assert not is_base_run(name)


@pytest.mark.parametrize(
    "base_model, name",
    [
        ("Qwen/Qwen3-0.6B", "base-qwen3-0.6b"),
        ("tiny", "base-tiny"),
        ("/models/My Model_v2/", "base-my-model-v2"),
    ],
)
def test_a_base_run_name_and_its_parts_round_trip(base_model, name):
    assert base_run_name(base_model) == name and is_base_run(name)
    assert parse_run_name(name) == {"kind": "base", "short_name": short_name(base_model)}
    assert base_run_name(parse_run_name(name)["short_name"]) == name


@pytest.mark.parametrize(
    "name",
    [
        "foo",
        "arc-lora",
        "arc-lora-r4",
        "arc-r4-s0",
        "-arc-lora-s0",
        "arc--s0",
        "arc-lora-r04-s0",
        "arc-lora-s01",
        "Arc-lora-s0",
        "arc-lo_ra-s0",
        "base-",
        "base-Qwen3",
        "a--b-arc-lora-s0",
    ],
)
def test_names_this_project_does_not_make_are_refused(name):
    with pytest.raises(ConfigError, match="run name"):
        parse_run_name(name)


def test_a_trained_run_never_reads_as_a_base_run():
    with pytest.raises(ConfigError, match="untuned base model"):
        train_run_name("arc", "lora", 4, 0, base_prefix=short_name("org/base-model"))


def test_a_study_of_several_bases_prefixes_each_run_with_its_base(tmp_path):
    study = tmp_path / "two-bases.yaml"
    study.write_text(
        "trained_base_models: [Qwen/Qwen3-0.6B, Qwen/Qwen3-1.7B]\nuntuned_base_models: [tiny]\n"
        "methods: {full: [null], lora: [8]}\ntrain_tasks: [squad_v2]\nseeds: [0, 1]\n"
    )
    plan = load_plan(str(study))
    assert "qwen3-1.7b-squad_v2-lora-r8-s1" in plan.train and "qwen3-0.6b-squad_v2-full-s0" in plan.train
    assert list(plan.base) == ["base-tiny"]
    for name, job in plan.train.items():
        parts = parse_run_name(name)
        assert parts["base_prefix"] == short_name(job.config["base_model"])
        assert (parts["task"], parts["method"], parts["seed"]) == (
            job.config["train_task"],
            job.config["method"],
            job.config["seed"],
        )
        assert parts["rank"] == (None if job.config["method"] == "full" else job.config["rank"])
    assert all(parse_run_name(name)["kind"] == "base" for name in plan.base)


def test_a_study_of_one_base_has_no_prefix():
    plan = load_plan("paper")
    assert all(parse_run_name(name)["base_prefix"] == "" for name in plan.train)
    assert all(is_base_run(name) for name in plan.base) and not any(is_base_run(name) for name in plan.train)


@pytest.mark.parametrize(
    "name",
    [
        "openmath-dora-r16-s0",
        "qwen3-1.7b-arc-full-s0",
        "base-qwen3-0.6b",
        "base-tiny",
        "basement-arc-lora-r4-s0",
        "base",
        "xbase-tiny",
        "bas-e",
    ],
)
def test_the_workflow_constraint_agrees_with_is_base_run(name):
    """Snakemake matches a wildcard constraint against the whole wildcard value."""
    assert (re.fullmatch(TRAIN_RUN_WILDCARD, name) is not None) == (not is_base_run(name))


def test_the_workflow_rules_take_run_names_from_run_names():
    rules = repo_root() / "workflow" / "rules"
    train = (rules / "train.smk").read_text()
    evaluate = (rules / "evaluate.smk").read_text()
    assert re.search(r"^\s+run=TRAIN_RUN_WILDCARD\b", train, flags=re.M)
    assert "is_base_run(wc.model)" in evaluate
    assert "base-" not in train + evaluate  # no second spelling of the rule


@pytest.mark.slow
def test_snakemake_has_no_training_job_for_a_base_run(tmp_path):
    target = repo_root() / "outputs" / "smoke" / "runs" / "base-tiny" / "train.json"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "snakemake"),
            "-s",
            str(repo_root() / "workflow" / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--profile",
            str(repo_root() / "profiles" / "local"),
            "--config",
            "study=smoke",
            "-n",
            str(target),
        ],
        env=dict(os.environ, PEFTLAB_ROOT=str(repo_root())),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "No rule to produce" in result.stdout + result.stderr
