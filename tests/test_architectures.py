"""Randomly initialised models with a published architecture: parameter counts and attention
shapes as the model cards publish them, without building the weights."""

from __future__ import annotations

import pytest
import torch

from peftlab.config import resolve_config
from peftlab.core.errors import ConfigError
from peftlab.models.loading import architecture_config, architectures


def counts(name: str) -> tuple[float, float, object]:
    from transformers import AutoModelForCausalLM

    config = architecture_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.get_input_embeddings().weight.numel()
    return total / 1e9, (total - embeddings) / 1e9, config


@pytest.mark.parametrize(
    "name, total, without_embeddings, kv_heads",
    [
        ("qwen3-0.6b", 0.6, 0.44, 8),
        ("qwen3-1.7b", 1.7, 1.4, 8),
    ],
)
def test_published_parameter_counts_and_gqa(name, total, without_embeddings, kv_heads):
    got_total, got_body, config = counts(name)
    assert round(got_total, 1) == total and round(got_body, 2 if total < 1 else 1) == without_embeddings
    assert config.num_attention_heads == 16 and config.num_key_value_heads == kv_heads
    assert config.tie_word_embeddings and config.vocab_size == 151936


def test_random_base_model_is_validated_and_names_the_choices():
    assert set(architectures()) >= {"qwen3-0.6b", "qwen3-1.7b"}
    assert resolve_config(overrides={"base_model": "random:qwen3-0.6b"})["base_model"] == "random:qwen3-0.6b"
    with pytest.raises(ConfigError, match="random:qwen3-0.6b"):
        resolve_config(overrides={"base_model": "random:qwen3-9b"})
