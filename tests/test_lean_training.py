"""The training-time stand-ins: packed dropout masks have nn.Dropout's distribution, and the
embedding's in-place gradient equals autograd's."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from peftlab.run.lean_training import (
    PackedDropout,
    embedding_grad_in_place,
    packed_dropout,
    packed_dropout_masks,
    uses_packed_masks,
)

N = 1 << 22  # elements per statistical check: the drop rate's standard error is ~1.5e-4 at p = 0.1


def _drop_rate(p: float, seed: int = 0, n: int = N) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return packed_dropout(torch.ones(n), p, generator) == 0


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5])
def test_each_element_is_dropped_with_probability_p(p):
    dropped = _drop_rate(p)
    sigma = math.sqrt(p * (1 - p) / N)
    assert abs(dropped.float().mean().item() - p) < 5 * sigma
    # the four 16-bit lanes of each 64-bit draw are all uniform (random_() alone leaves the sign bit 0)
    for lane in dropped.view(-1, 4).T:
        assert abs(lane.float().mean().item() - p) < 5 * 2 * sigma
    # neighbours are independent: P(both dropped) = p^2
    pairs = dropped.view(-1, 2)
    assert abs((pairs[:, 0] & pairs[:, 1]).float().mean().item() - p * p) < 5 * math.sqrt(p * p / (N / 2))


def test_the_boundary_lane_is_dropped_with_the_remaining_fraction():
    """p = 0.5 / 65536: no lane lies wholly below the threshold, so every drop comes from the
    boundary lane's second draw (half of them): about n / 131072 drops."""
    n = 1 << 24
    drops = _drop_rate(0.5 / 65536, n=n).sum().item()
    expected = n / 131072  # 128
    assert abs(drops - expected) < 5 * math.sqrt(expected)


def test_kept_values_are_scaled_and_the_gradient_follows_the_mask():
    x = torch.randn(64, 48, requires_grad=True)
    y = packed_dropout(x, 0.25, torch.Generator().manual_seed(3))
    kept = y != 0
    assert torch.equal(y[kept], (x * (1 / 0.75))[kept])
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.75)


def test_masks_repeat_with_the_seed_and_differ_between_seeds():
    assert torch.equal(_drop_rate(0.1, seed=1, n=4096), _drop_rate(0.1, seed=1, n=4096))
    assert not torch.equal(_drop_rate(0.1, seed=1, n=4096), _drop_rate(0.1, seed=2, n=4096))


def test_packed_dropout_is_the_identity_outside_training():
    layer = PackedDropout(0.3).eval()
    x = torch.randn(10, 10)
    assert layer(x) is x


@pytest.mark.parametrize(
    "choice, device, packed",
    [("auto", "cpu", True), ("auto", "cuda", False), ("packed", "cuda", True), ("bernoulli", "cpu", False)],
)
def test_auto_packs_masks_on_a_cpu_only(choice, device, packed):
    assert uses_packed_masks(choice, device) is packed


def _lora_tiny():
    from peft import LoraConfig, get_peft_model

    from peftlab.models.loading import load_model

    model, tokenizer, _ = load_model(base_model="tiny", dtype="float32", device="cpu")
    config = LoraConfig(r=4, lora_dropout=0.1, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return get_peft_model(model, config), tokenizer


def test_the_adapters_dropouts_are_swapped_for_the_block_and_put_back():
    model, _ = _lora_tiny()
    dropouts = lambda: [m for n, m in model.named_modules() if ".lora_dropout." in n]  # noqa: E731
    assert dropouts() and all(type(m) is nn.Dropout for m in dropouts())
    with packed_dropout_masks(model) as swapped:
        assert swapped == len(dropouts())
        assert all(type(m) is PackedDropout and m.p == 0.1 for m in dropouts())
    assert all(type(m) is nn.Dropout for m in dropouts())
    with packed_dropout_masks(model, enabled=False) as swapped:
        assert swapped == 0 and all(type(m) is nn.Dropout for m in dropouts())


def _accumulated_grads(model, batches, in_place: bool) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    with embedding_grad_in_place(model) if in_place else _nothing() as patched:
        assert patched in (in_place, None)
        for ids, labels in batches:
            model(input_ids=ids, labels=labels).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_in_place_embedding_gradient_equals_autograd_with_a_tied_head_and_padding():
    from peftlab.models.loading import load_model

    model, tokenizer, _ = load_model(base_model="tiny", dtype="float32", device="cpu")
    model = model.double()  # equality up to rounding: compare in float64
    embedding = model.get_input_embeddings()
    assert embedding.weight is model.get_output_embeddings().weight  # tied, as SmolLM2 and Qwen3-0.6B
    assert embedding.padding_idx is not None
    torch.manual_seed(0)
    batches = []
    for length in (12, 9):  # two micro-batches accumulated into the same .grad
        ids = torch.randint(0, embedding.num_embeddings, (2, length))
        ids[1, :3] = embedding.padding_idx  # left padding: its row gets no embedding gradient
        labels = ids.clone()
        labels[:, : length // 2] = -100
        batches.append((ids, labels))
    expected = _accumulated_grads(model, batches, in_place=False)
    got = _accumulated_grads(model, batches, in_place=True)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-12, msg=name)
    assert "forward" not in vars(embedding)  # the module's own forward is back


def test_a_frozen_embedding_is_left_alone():
    model, _ = _lora_tiny()  # LoRA freezes the embedding
    with embedding_grad_in_place(model) as patched:
        assert patched is False
        assert "forward" not in vars(model.get_input_embeddings())


def test_the_in_place_embedding_gradient_stays_off_in_a_distributed_run(monkeypatch, tmp_path):
    """Under torch.distributed (a process group of one, gloo) or a launcher's WORLD_SIZE > 1 the
    embedding keeps autograd's gradient, which DDP's and FSDP's reduction hooks see."""
    from peftlab.models.loading import load_model

    model, _, _ = load_model(base_model="tiny", dtype="float32", device="cpu")
    with embedding_grad_in_place(model) as patched:
        assert patched  # a single process
    monkeypatch.setenv("WORLD_SIZE", "2")
    with embedding_grad_in_place(model) as patched:
        assert not patched
    monkeypatch.delenv("WORLD_SIZE")
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        with embedding_grad_in_place(model) as patched:
            assert not patched and "forward" not in vars(model.get_input_embeddings())
    finally:
        torch.distributed.destroy_process_group()
