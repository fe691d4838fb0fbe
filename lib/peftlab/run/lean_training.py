"""Training-time stand-ins for two library modules: the same computation in less time or memory.

- **Packed dropout masks** (`dropout_masks: packed`, the CPU default). `nn.Dropout` draws one
  value from the CPU's Mersenne Twister per element; on a 2-core CPU that drawing took 14 % of a
  LoRA training step (the adapters' dropout sits on every attention projection's input). A
  packed mask takes 16 bits per element, four elements per 64-bit draw, and drops an element
  with probability `p` exactly (the 1-in-65,536 elements on the 16-bit boundary draw again):
  the same distribution of masks, from the same seeded generator, about 5x cheaper. GPUs draw
  masks from a counter-based generator that is already cheap, so `auto` keeps `nn.Dropout` there.
- **The input embedding's gradient added in place** (always). PyTorch's embedding backward
  builds a dense vocabulary x hidden gradient, and a tied LM head's contribution waits in
  autograd's buffer until that second one arrives at the end of the backward pass, to be
  summed: three vocabulary-sized tensors at once on top of the gradients (0.11 GB each for
  SmolLM2's 49k x 576, 0.62 GB for Qwen3-0.6B's 152k x 1024). Here the embedding's rows are
  added straight into `weight.grad`, so the head's contribution is accumulated as soon as it is
  computed and neither extra tensor exists. The gradient is the same up to the order of
  floating-point additions (tested).
"""

from __future__ import annotations

import contextlib
import math
import os

import torch
from torch import nn
from torch.nn import functional as F

from peftlab.config import DROPOUT_MASKS

_LANES = 1 << 16  # values a 16-bit lane takes


def packed_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout of `x` with drop probability `p` (0 < p < 1), its mask drawn 16 bits per element."""
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
    words.random_(-(1 << 63), (1 << 63) - 1, generator=generator)  # all 64 bits (random_() leaves the sign bit 0)
    lanes = words.view(torch.int16)[:n].view(x.shape)  # uniform over -32768 .. 32767
    threshold = p * _LANES
    whole = math.floor(threshold)
    boundary = whole - _LANES // 2
    drop = lanes < boundary  # probability whole / 65536
    if threshold > whole:  # the lanes on the boundary are dropped with the remaining fraction
        ties = (lanes == boundary).nonzero(as_tuple=True)
        if ties[0].numel():
            drop[ties] = torch.rand(ties[0].numel(), device=x.device, generator=generator) < threshold - whole
    # masked_fill keeps only the boolean mask for the backward pass, as nn.Dropout does
    return x.mul(1.0 / (1.0 - p)).masked_fill_(drop, 0.0)


class PackedDropout(nn.Dropout):
    """`nn.Dropout` with packed masks (`packed_dropout`); identical outside training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return super().forward(x)
        return packed_dropout(x, self.p)


def uses_packed_masks(choice: str, device: torch.device | str) -> bool:
    """`dropout_masks` resolved for the device that trains: auto = packed on a CPU."""
    if choice not in DROPOUT_MASKS:
        raise ValueError(f"dropout_masks {choice!r} is not allowed; allowed: {', '.join(DROPOUT_MASKS)}")
    return choice == "packed" or (choice == "auto" and torch.device(device).type == "cpu")


@contextlib.contextmanager
def packed_dropout_masks(model: nn.Module, enabled: bool = True):
    """Every `nn.Dropout` in `model` (PEFT's adapter dropouts) becomes a `PackedDropout` of the
    same `p` for the span of the block, then the originals are put back."""
    swapped = []
    if enabled:
        for parent in model.modules():
            for name, child in list(parent._modules.items()):
                if type(child) is nn.Dropout and child.p > 0:
                    parent._modules[name] = PackedDropout(child.p)
                    swapped.append((parent, name, child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            parent._modules[name] = child


class _EmbeddingGradInPlace(torch.autograd.Function):
    """F.embedding whose backward adds each row's gradient into `weight.grad` itself.

    The weight is not an input of the node (the module is passed, not its tensor): autograd then
    sees the tied LM head as the weight's only consumer and accumulates its gradient at once.
    `anchor` (an empty tensor that requires grad) keeps the node in the graph so that its
    backward runs."""

    @staticmethod
    def forward(ctx, ids, anchor, embedding):
        ctx.save_for_backward(ids)
        ctx.embedding = embedding
        return F.embedding(ids, embedding.weight.detach(), embedding.padding_idx)

    @staticmethod
    def backward(ctx, grad_out):
        (ids,) = ctx.saved_tensors
        weight, padding_idx = ctx.embedding.weight, ctx.embedding.padding_idx
        rows = grad_out.reshape(-1, grad_out.shape[-1])
        index = ids.reshape(-1)
        if padding_idx is not None:  # the padding row gets no gradient, as in nn.Embedding
            keep = index != padding_idx
            rows, index = rows[keep], index[keep]
        if weight.grad is None:
            weight.grad = torch.zeros_like(weight)
        weight.grad.index_add_(0, index, rows.to(weight.grad.dtype))
        return None, None, None


def _plain_embedding(module: nn.Module) -> bool:
    return (
        type(module) is nn.Embedding
        and module.weight.requires_grad
        and module.max_norm is None
        and not module.scale_grad_by_freq
        and not module.sparse
    )


def distributed() -> bool:
    """Training spans processes (torch.distributed initialised, or a launcher's WORLD_SIZE > 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return True
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


@contextlib.contextmanager
def embedding_grad_in_place(model: nn.Module):
    """For the span of the block, the model's input embedding (when it trains and is a plain
    `nn.Embedding`) adds its gradient into `weight.grad` in place (`_EmbeddingGradInPlace`).
    Only in a single process: a gradient written outside autograd skips DDP's and FSDP's
    reduction hooks, so under torch.distributed (or a launcher's WORLD_SIZE > 1) autograd keeps it."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embedding is None or not _plain_embedding(embedding) or distributed():
        yield False
        return
    anchor = torch.empty(0, device=embedding.weight.device, requires_grad=True)

    def forward(ids: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return F.embedding(ids, embedding.weight, embedding.padding_idx)
        return _EmbeddingGradInPlace.apply(ids, anchor, embedding)

    embedding.forward = forward
    try:
        yield True
    finally:
        del embedding.forward
