"""The shared prefix at the demo's evaluation settings: batched scoring with the tokens every
prompt starts with (system prompt, chat template) computed once, against every prompt
computed whole (`peftlab.run.generate.generate_batched(share_prefix=...)`).

The reference protocol's 1000 new tokens make decoding the bulk of the `eval` part's time; at
the demo's 32 new tokens the prompts are most of the work, and that is where sharing their
prefix counts. The two settings alternate (shared, whole, shared, whole) so that a drift of the
machine's speed touches both; each setting's time is its best of the passes.
"""

from __future__ import annotations

import time

from peftlab.models.loading import load_model
from peftlab.run.generate import generate_batched, render_prompts, shared_prefix_length
from peftlab.tasks.registry import eval_messages, load_rows

from .common import share_equal
from .evaluation import TASKS


def bench_prefix(
    *, base_model: str, n_items: int, max_new_tokens: int, batch_size: int, device: str, dtype: str, passes: int = 2
) -> dict:
    model, tokenizer, info = load_model(base_model=base_model, dtype=dtype, device=device)
    result = {
        "model": info.to_dict(),
        "items_per_task": n_items,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "protocol": "corrected",
        "tasks": {},
    }
    for task in TASKS:
        rows = load_rows(task=task, split="test", n=n_items)
        prompts = render_prompts(tokenizer, [eval_messages(task, row, "corrected") for row in rows])
        tokens = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        seconds: dict[bool, list[float]] = {True: [], False: []}
        replies: dict[bool, list[str]] = {}
        for _ in range(passes):
            for share in (True, False):
                started = time.perf_counter()
                out = generate_batched(
                    model,
                    tokenizer,
                    prompts,
                    max_new_tokens=max_new_tokens,
                    batch_size=batch_size,
                    share_prefix=share,
                    desc=f"{task} ({'shared prefix' if share else 'whole prompts'})",
                )
                seconds[share].append(time.perf_counter() - started)
                replies[share] = [r["reply"] for r in out]
        shared, whole = min(seconds[True]), min(seconds[False])
        result["tasks"][task] = {
            "prompt_tokens": sum(map(len, tokens)),
            "shared_prefix_tokens": shared_prefix_length(tokens),
            "shared_s": seconds[True],
            "whole_s": seconds[False],
            "speedup": whole / shared,
            "identical_reply_share": share_equal(zip(replies[True], replies[False])),
        }
    total_shared = sum(min(t["shared_s"]) for t in result["tasks"].values())
    total_whole = sum(min(t["whole_s"]) for t in result["tasks"].values())
    result["speedup"] = total_whole / total_shared
    return result


def prefix_summary(result: dict) -> dict:
    return {
        "prefix_speedup": result["speedup"],
        "prefix_speedup_by_task": {task: r["speedup"] for task, r in result["tasks"].items()},
        "prefix_identical_reply_share": min(r["identical_reply_share"] for r in result["tasks"].values()),
    }
