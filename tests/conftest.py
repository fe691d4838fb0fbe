"""Shared fixtures: tiny-model configs and a per-test output folder."""

from __future__ import annotations

import os

import pytest

from peftlab.config import resolve_config

TINY_TRAIN = dict(base_model="tiny", n_train=16, batch_size=4, max_length=512, epochs=1, rank=8)
TINY_EVAL = dict(base_model="tiny", n_eval=6, max_new_tokens=12, eval_batch_size=3, n_latency=2)


@pytest.fixture
def tiny_config(tmp_path):
    """resolve_config for the tiny model, writing under tmp_path."""

    def make(**overrides):
        values = {**TINY_TRAIN, **TINY_EVAL, "out_dir": str(tmp_path / "run"), **overrides}
        return resolve_config(overrides=values)

    return make


# Progress bars are for people; in test logs they are noise.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
