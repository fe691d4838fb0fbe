"""The engine that decodes an evaluation's replies for scoring (`eval_backend`).

* `peftlab`: this project's batched greedy decoder (`generate.generate_batched`);
* `transformers`: Transformers' continuous batching (`model.generate_batch`: paged KV cache,
  requests scheduled as slots free up, blocks of a shared prompt prefix shared);
* `auto`: `peftlab` where the evaluation benchmark measured it ahead on that kind of device
  (`PEFTLAB_AHEAD`) and the model's attention is one it supports; `transformers` everywhere else.

Both decode greedily, so the replies agree up to float rounding; every item of one evaluation
is decoded by one engine, which its record names (`choose_engine`'s `Engine`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from peftlab.config import validate
from peftlab.run.generate import (
    UnsupportedAttentionError,
    check_supported_attention,
    eos_token_ids,
    generate_batched,
    sync_device,
)

# Device kinds on which `bench/benchmark.py --only eval` measured the batched decoder ahead of
# continuous batching, with the figures (60 reference-protocol items, 1,000-token cap). A device
# kind not named here has no such measurement, so `auto` gives it the library's engine.
PEFTLAB_AHEAD = {
    "cpu": "60 reference-protocol items, 1,000-token cap, SmolLM2-135M in float32 on a 2-core Intel Xeon: "
    "1.40 items/s against 0.36, 3.83x (3.78-3.86x over 3 interleaved rounds), the same replies",
}


@dataclass(frozen=True)
class Engine:
    """The engine an evaluation decodes with, the `eval_backend` setting it came from, and why."""

    name: str
    setting: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def choose_engine(setting: str, model) -> Engine:
    """The engine for `setting` on `model`'s device. `peftlab` on a model whose attention the
    batched decoder does not support raises `UnsupportedAttentionError`; `auto` then takes
    `transformers` instead and says why."""
    validate({"eval_backend": setting}, source="choose_engine")
    if setting == "peftlab":
        check_supported_attention(model)
        return Engine("peftlab", setting, "set by eval_backend")
    if setting == "transformers":
        return Engine("transformers", setting, "set by eval_backend")
    try:
        check_supported_attention(model)
    except UnsupportedAttentionError as error:
        return Engine("transformers", setting, f"auto: {error}")
    kind = torch.device(model.device).type
    if kind in PEFTLAB_AHEAD:
        return Engine("peftlab", setting, f"auto: the batched decoder measured ahead on {kind} ({PEFTLAB_AHEAD[kind]})")
    return Engine("transformers", setting, f"auto: no benchmark shows the batched decoder ahead on {kind}")


def generate_replies(engine: Engine, model, tokenizer, prompts: list[str], **keywords) -> list[dict]:
    """Every prompt's greedy reply, decoded by `engine`: per item `reply`, `tokens_generated`
    (up to and including the end-of-sequence token) and `seconds` (its share of the wall time)."""
    return DECODERS[engine.name](model, tokenizer, prompts, **keywords)


# Tokens per page of the continuous-batching cache: Transformers' default.
PAGE_TOKENS = 256


def continuous_batching_config(token_lists: list[list[int]], *, max_new_tokens: int, batch_size: int):
    """A cache sized for the workload: `batch_size` requests at a time, each holding its prompt
    and `max_new_tokens`. Left to itself the library sizes the cache from the device's free
    memory, which on a CPU is the machine's RAM (15 GB resident for 24 short prompts)."""
    from transformers import ContinuousBatchingConfig

    concurrent = min(batch_size, len(token_lists))
    longest = max(len(ids) for ids in token_lists) + max_new_tokens
    return ContinuousBatchingConfig(
        page_size=PAGE_TOKENS,
        num_blocks=math.ceil(concurrent * longest / PAGE_TOKENS) + concurrent,
        max_requests_per_batch=concurrent,
        max_batch_tokens=max(1024, longest),
        allow_block_sharing=True,  # a prefix all prompts share is cached once (prefix sharing)
    )


@torch.inference_mode()
def generate_continuous(
    model, tokenizer, prompts: list[str], *, max_new_tokens: int, batch_size: int, desc: str = "generate", **_ignored
) -> list[dict]:
    """Replies from Transformers' continuous batching (`generate_batch`), greedy, in input order.
    Keywords of the batched decoder's own levers (drafts, prefix sharing) do not apply and are
    ignored. Each item's `seconds` is the wall time over the items."""
    from transformers import GenerationConfig

    if not prompts:
        return []
    token_lists = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    generation = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=sorted(eos_token_ids(model, tokenizer)),
        pad_token_id=tokenizer.pad_token_id,
    )
    print(f"{desc}: {len(prompts)} items by continuous batching")
    sync_device(model.device)
    started = time.perf_counter()
    outputs = model.generate_batch(
        token_lists,
        generation_config=generation,
        continuous_batching_config=continuous_batching_config(
            token_lists, max_new_tokens=max_new_tokens, batch_size=batch_size
        ),
        progress_bar=True,
    )
    sync_device(model.device)
    seconds = (time.perf_counter() - started) / len(prompts)
    # request ids count the inputs in order (req_0, req_1, ...); each output names its prompt too
    ordered = sorted(outputs.values(), key=lambda output: int(output.request_id.rsplit("_", 1)[-1]))
    if len(ordered) != len(prompts) or any(o.prompt_ids != ids for o, ids in zip(ordered, token_lists)):
        raise RuntimeError(
            f"continuous batching returned {len(ordered)} replies for {len(prompts)} prompts, "
            "or not in the prompts' order"
        )
    failed = [o.request_id for o in ordered if o.error]
    if failed:
        first = next(o for o in ordered if o.error)
        raise RuntimeError(
            f"continuous batching failed on {len(failed)} request(s), first {first.request_id}: {first.error}"
        )
    return [
        {
            "reply": tokenizer.decode(o.generated_tokens, skip_special_tokens=True),
            "tokens_generated": len(o.generated_tokens),
            "seconds": seconds,
        }
        for o in ordered
    ]


# The decoder of each engine (`eval_backend`'s explicit settings).
DECODERS = {"peftlab": generate_batched, "transformers": generate_continuous}
