"""Evaluation: the reference protocol against the project's batched decoding, at several sizes.

The reference protocol is one prompt per `generate()` call with `max_new_tokens=1000`. The
project decodes `eval_batch_size` prompts together (`peftlab.run.generate.generate_batched`):
each prompt's cache is computed on its own, every sequence leaves the batch when it ends, and
the batch cache lives in buffers that grow by doubling (`growing_cache`) instead of being
copied at every step, the tokens all prompts start with are computed once (`share_prefix`),
and once few sequences remain each checks tokens drafted from its own text alongside its next
one (`draft_tokens`). Variants: the same with the per-step copying cache (`DynamicCache`, as
before), the same stopping once the first `\\boxed{}` closes (all the reference scoring
reads), the same computing every prompt whole, and the same without drafts. Every variant is
compared with the reference on the share of identical parsed answers.

A size is a total item count split evenly over the three tasks (60: 20 per task). Batch-1
timings do not depend on which other items are timed, so the reference protocol runs once
over the largest size's items and each size's reference time is the sum over its own items.
"""

from __future__ import annotations

import time

from peftlab.models.loading import load_model
from peftlab.run.generate import generate_batched, render_prompts, time_single
from peftlab.tasks.boxed import extract_boxed, reference_extract_boxed
from peftlab.tasks.registry import eval_messages, load_rows

from .common import share_equal

TASKS = ("arc", "openmath", "squad_v2")
REFERENCE_MAX_NEW_TOKENS = 1000
BASE_SIZE = 60  # the size of the earlier benchmark (20 per task): its keys carry no suffix
SPEEDUP_GOAL = 5.0
IDENTICAL_GOAL = 0.99
VARIANTS = {  # name -> generate_batched keywords
    "batched": dict(stop_at_first_box=False, growing_cache=True),
    "batched_dynamic_cache": dict(stop_at_first_box=False, growing_cache=False),
    "batched_stop_at_first_box": dict(stop_at_first_box=True, growing_cache=True),
    # every prompt computed whole, its system prompt and chat template included (as before)
    "batched_unshared_prefix": dict(stop_at_first_box=False, growing_cache=True, share_prefix=False),
    # one token per sequence and pass: no drafts checked alongside it
    "batched_no_drafts": dict(stop_at_first_box=False, growing_cache=True, draft_tokens=0),
}


def split_items(total: int, tasks=TASKS) -> dict[str, int]:
    """`total` items split as evenly as possible over the tasks, the first tasks taking the rest
    (200 -> 67, 67, 66)."""
    if total < 1:
        raise ValueError(f"an evaluation size must be at least 1 item, not {total}")
    share, rest = divmod(total, len(tasks))
    return {task: share + (index < rest) for index, task in enumerate(tasks)}


def size_suffix(total: int) -> str:
    """The summary key suffix of a size: none for the earlier benchmark's 60 items, `_<N>` otherwise."""
    return "" if total == BASE_SIZE else f"_{total}"


def reference_parse(reply: str) -> str | None:
    """The answer the reference scoring reads: the first box."""
    boxed = reference_extract_boxed(reply)
    return boxed.strip() if boxed is not None else None


def _item_positions(counts: dict[str, int], largest: dict[str, int]) -> list[int]:
    """Positions, in the largest size's item list (task by task), of a smaller size's items:
    the first `counts[task]` items of each task."""
    positions, start = [], 0
    for task, n in largest.items():
        positions += range(start, start + counts[task])
        start += n
    return positions


def compare(reference: list[dict], replies: list[dict]) -> dict:
    """How far a variant's replies agree with the reference protocol's, item by item."""
    same = [reference_parse(a["reply"]) == reference_parse(b["reply"]) for a, b in zip(reference, replies)]
    return {
        "identical_parsed_share": share_equal((s, True) for s in same),
        # the corrected scoring reads the last box; stopping at the first box may change it
        "identical_last_box_share": share_equal(
            (extract_boxed(a["reply"]), extract_boxed(b["reply"])) for a, b in zip(reference, replies)
        ),
        "identical_reply_share": share_equal((a["reply"], b["reply"]) for a, b in zip(reference, replies)),
        "differing_items": [i for i, ok in enumerate(same) if not ok],
    }


def bench_eval(
    *,
    base_model: str,
    sizes: list[int],
    device: str,
    dtype: str,
    batch_size: int,
    max_new_tokens: int = REFERENCE_MAX_NEW_TOKENS,
    variants: dict | None = None,
) -> dict[int, dict]:
    """One result per size: the reference protocol's items/s, each variant's, their ratio and
    the share of identical parsed answers."""
    variants = variants or VARIANTS
    model, tokenizer, info = load_model(base_model=base_model, dtype=dtype, device=device)
    largest = split_items(max(sizes))
    prompts = []
    for task, n in largest.items():
        rows = load_rows(task=task, split="test", n=n) if n else []
        prompts += render_prompts(tokenizer, [eval_messages(task, row, "reference") for row in rows])

    reference = time_single(model, tokenizer, prompts, max_new_tokens=max_new_tokens, desc="reference: batch 1")
    results = {}
    for total in sizes:
        counts = split_items(total)
        positions = _item_positions(counts, largest)
        ref = [reference[i] for i in positions]
        ref_s = sum(r["seconds"] for r in ref)
        subset = [prompts[i] for i in positions]
        result = {
            "model": info.to_dict(),
            "items": total,
            "per_task": counts,
            "max_new_tokens": max_new_tokens,
            "batch_size": batch_size,
            "reference": {
                "wall_s": ref_s,
                "items_per_s": total / ref_s,
                "tokens_generated": sum(r["tokens_generated"] for r in ref),
                "hit_max_new_tokens": sum(r["tokens_generated"] >= max_new_tokens for r in ref),
                "parsed_share": sum(reference_parse(r["reply"]) is not None for r in ref) / total,
            },
            "variants": {},
            "goal": {"speedup": SPEEDUP_GOAL, "identical_parsed_share": IDENTICAL_GOAL},
        }
        for name, keywords in variants.items():
            # a short untimed call first: the first decoding after the batch-1 pass pays set-up costs
            generate_batched(model, tokenizer, subset[:1], max_new_tokens=4, batch_size=1, desc="warm-up", **keywords)
            started = time.perf_counter()
            replies = generate_batched(
                model,
                tokenizer,
                subset,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                desc=f"{name} ({total} items)",
                **keywords,
            )
            wall = time.perf_counter() - started
            agreement = compare(ref, replies)
            result["variants"][name] = {
                "generate_batched": keywords,
                "wall_s": wall,
                "items_per_s": total / wall,
                "speedup": ref_s / wall,
                **agreement,
                "tokens_generated": sum(r["tokens_generated"] for r in replies),
                "goal_met": ref_s / wall >= SPEEDUP_GOAL and agreement["identical_parsed_share"] >= IDENTICAL_GOAL,
            }
        results[total] = result
    return results


def eval_summary(result: dict) -> dict:
    """The summary.json keys of one size (suffixed by size_suffix)."""
    sfx = size_suffix(result["items"])
    variants = result["variants"]
    keys = {f"eval_items{sfx}": result["items"]}
    if "batched" in variants:
        batched = variants["batched"]
        keys.update(
            {
                f"eval_speedup{sfx}": batched["speedup"],
                f"eval_identical_share{sfx}": batched["identical_parsed_share"],
                f"eval_identical_reply_share{sfx}": batched["identical_reply_share"],
                f"eval_goal_met{sfx}": batched["goal_met"],
            }
        )
    for name, variant in variants.items():
        if name != "batched" and name.startswith("batched_"):
            tail = name.removeprefix("batched_")
            keys[f"eval_speedup_{tail}{sfx}"] = variant["speedup"]
            keys[f"eval_identical_share_{tail}{sfx}"] = variant["identical_parsed_share"]
    return keys
