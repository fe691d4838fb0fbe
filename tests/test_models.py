"""The three model sources load through one function and generate."""

from __future__ import annotations

import pytest
import torch

from peftlab.models.loading import ModelLoadError, load_model, save_tiny


def test_tiny_qwen3_has_gqa_shapes_and_generates():
    model, tokenizer, info = load_model(base_model="tiny", device="cpu")
    assert info.architecture == "Qwen3ForCausalLM" and info.dtype == "float32" and info.device == "cpu"
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.out_features != attn.k_proj.out_features  # grouped-query attention
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_tiny_is_the_same_model_every_time():
    a, _, _ = load_model(base_model="tiny")
    b, _, _ = load_model(base_model="tiny")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_local_checkpoint_directory_and_dtype(tmp_path):
    save_tiny(tmp_path / "ckpt")
    model, _, info = load_model(base_model=str(tmp_path / "ckpt"), dtype="bfloat16")
    assert info.source == "local" and info.dtype == "bfloat16" and model.dtype == torch.bfloat16


def test_missing_model_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="without config.json"):
        load_model(base_model=str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="could not load base_model 'no-such-org/no-such-model'"):
        load_model(base_model="no-such-org/no-such-model")


@pytest.mark.embedded
def test_embedded_smollm2_answers_a_chat_prompt():
    model, tokenizer, info = load_model(base_model="embedded", device="cpu")
    assert info.architecture == "LlamaForCausalLM" and 130e6 < info.n_params < 140e6
    assert not hasattr(model.config, "quantization_config")  # a plain checkpoint: trainable
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    reply = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply
