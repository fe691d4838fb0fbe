"""Greedy generation: batched for scoring, batch-1 and synchronised for latency."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm


def render_prompts(tokenizer, conversations: list[list[dict]]) -> list[str]:
    """Chat-template each conversation, ending with the assistant's turn. Qwen3's thinking
    is disabled; templates without that switch ignore it."""
    return [tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                          enable_thinking=False) for messages in conversations]


def _greedy_kwargs(tokenizer, max_new_tokens: int) -> dict:
    return dict(max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                pad_token_id=tokenizer.pad_token_id, use_cache=True)


def stop_after_first_box(tokenizer, prompt_width: int):
    """A stopping criterion: a sequence is done once its reply holds a closed `\\boxed{...}`.

    The reference scoring reads the first box only, so nothing generated after it can change
    that score; the corrected scoring reads the last box and must not use this."""
    import re

    from transformers import StoppingCriteria

    closed = re.compile(r"\\boxed\{.*?\}", re.DOTALL)

    class FirstBox(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            replies = tokenizer.batch_decode(input_ids[:, prompt_width:], skip_special_tokens=True)
            return torch.tensor([bool(closed.search(r)) for r in replies], device=input_ids.device)

    return FirstBox()


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _count_generated(new_tokens: list[int], eos_ids: set[int], pad_id: int | None = None) -> int:
    """Tokens the model produced: up to and including the first end-of-sequence token, and
    before the padding that fills a sequence stopped early in a batch."""
    for index, token in enumerate(new_tokens):
        if token in eos_ids:
            return index + 1
        if token == pad_id:
            return index
    return len(new_tokens)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def generate_batched(model, tokenizer, prompts: list[str], *, max_new_tokens: int, batch_size: int,
                     desc: str = "generate", stop_at_first_box: bool = False) -> list[dict]:
    """Replies for all prompts, `batch_size` at a time, left-padded. Prompts are grouped by
    length (fewer pad tokens) and returned in input order. Each item's `seconds` is its
    share of its batch's wall time."""
    tokenizer.padding_side = "left"
    eos_ids = _eos_ids(model, tokenizer)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    results: list[dict | None] = [None] * len(prompts)
    with tqdm(total=len(prompts), desc=desc, unit="item") as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            _sync(model.device)
            started = time.perf_counter()
            width = batch["input_ids"].shape[1]
            extra = {"stopping_criteria": [stop_after_first_box(tokenizer, width)]} if stop_at_first_box else {}
            output = model.generate(**batch, **_greedy_kwargs(tokenizer, max_new_tokens), **extra)
            _sync(model.device)
            seconds = (time.perf_counter() - started) / len(chunk)
            for row, index in enumerate(chunk):
                new = output[row, width:].tolist()
                n = _count_generated(new, eos_ids, tokenizer.pad_token_id)
                results[index] = {"reply": tokenizer.decode(new[:n], skip_special_tokens=True),
                                  "tokens_generated": n, "seconds": seconds}
            bar.update(len(chunk))
    return results


@torch.inference_mode()
def time_single(model, tokenizer, prompts: list[str], *, max_new_tokens: int, desc: str = "latency") -> list[dict]:
    """One generate() call per prompt after one warm-up call, with device synchronisation:
    the serving latency a user sees for a single request."""
    eos_ids = _eos_ids(model, tokenizer)
    kwargs = _greedy_kwargs(tokenizer, max_new_tokens)
    if not prompts:
        return []
    warm = tokenizer(prompts[0], return_tensors="pt", add_special_tokens=False).to(model.device)
    model.generate(**warm, **kwargs)
    timed = []
    for prompt in tqdm(prompts, desc=desc, unit="item"):
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
        _sync(model.device)
        started = time.perf_counter()
        output = model.generate(**inputs, **kwargs)
        _sync(model.device)
        seconds = time.perf_counter() - started
        new = output[0, inputs["input_ids"].shape[1]:].tolist()
        n = _count_generated(new, eos_ids)
        timed.append({"reply": tokenizer.decode(new[:n], skip_special_tokens=True), "tokens_generated": n,
                      "seconds": seconds})
    return timed
