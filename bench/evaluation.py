"""Evaluation: the reference protocol against the project's batched decoding, at several sizes.

The reference protocol is one prompt per `generate()` call with `max_new_tokens=1000`. The
project decodes `eval_batch_size` prompts together (`peftlab.run.generate.generate_batched`):
each prompt's cache is computed on its own, every sequence leaves the batch when it ends, and
the batch cache lives in buffers that grow by doubling (`growing_cache`) instead of being
copied at every step, the tokens all prompts start with are computed once (`share_prefix`),
and once few sequences remain each checks tokens drafted from its own text alongside its next
one (`draft_tokens`). Variants: the same with the per-step copying cache (`DynamicCache`, as
before), the same stopping once the first `\\boxed{}` closes (all the reference scoring
reads), the same computing every prompt whole, the same without drafts, and Transformers'
continuous batching (`model.generate_batch`, greedy, prefix sharing: `eval_backend:
transformers`). Every variant is compared with the reference on the share of identical parsed
answers and replies; the two engines with each other round by round (`engine_verdict`), which
says whether `eval_backend: auto` picks the faster one on this device.

A size is a total item count split evenly over the three tasks (60: 20 per task). Batch-1
timings do not depend on which other items are timed, so the reference protocol runs once
over the largest size's items and each size's reference time is the sum over its own items.
"""

from __future__ import annotations

import time

from peftlab.models.loading import load_model
from peftlab.run.backends import DECODERS, choose_engine
from peftlab.run.generate import render_prompts, time_single
from peftlab.tasks.boxed import extract_boxed, reference_extract_boxed
from peftlab.tasks.registry import eval_messages, load_rows

from .common import alternating, share_equal, spread

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
    # Transformers' continuous batching (`eval_backend: transformers`): paged cache, prefix sharing
    "transformers_continuous": dict(engine="transformers"),
}
# The two engines `eval_backend: auto` chooses between, as benchmark variants.
ENGINE_VARIANTS = {"peftlab": "batched", "transformers": "transformers_continuous"}


def _decode(model, tokenizer, prompts, *, keywords: dict, **common) -> list[dict]:
    """A variant's replies: Transformers' continuous batching for `engine="transformers"`,
    else the batched decoder with the variant's keywords."""
    keywords = dict(keywords)
    return DECODERS[keywords.pop("engine", "peftlab")](model, tokenizer, prompts, **common, **keywords)


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
    repeats: int = 1,
) -> dict[int, dict]:
    """One result per size: the reference protocol's items/s, each variant's, their ratio and
    the share of identical parsed answers. The variants run `repeats` rounds, interleaved
    (every variant once per round, the order reversed every other round); a variant's wall
    time is the median over its rounds, with the range. The reference protocol (batch 1, the
    slowest by far) runs once."""
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
        walls: dict[str, list[float]] = {name: [] for name in variants}
        replies: dict[str, list[dict]] = {}
        for round_index in range(repeats):
            for name in alternating(variants, round_index):
                keywords = variants[name]
                # a short untimed call first: the first decoding after another pays set-up costs
                _decode(model, tokenizer, subset[:1], keywords=keywords, max_new_tokens=4, batch_size=1, desc="warm-up")
                started = time.perf_counter()
                replies[name] = _decode(
                    model,
                    tokenizer,
                    subset,
                    keywords=keywords,
                    max_new_tokens=max_new_tokens,
                    batch_size=batch_size,
                    desc=f"{name} ({total} items, round {round_index + 1}/{repeats})",
                )
                walls[name].append(time.perf_counter() - started)
        for name, keywords in variants.items():
            wall = spread(walls[name])
            agreement = compare(ref, replies[name])
            speedup = ref_s / wall["median"]
            result["variants"][name] = {
                "keywords": keywords,
                "wall_s": wall["median"],
                "wall_s_range": [wall["min"], wall["max"]],
                "wall_s_runs": walls[name],
                "items_per_s": total / wall["median"],
                "items_per_s_range": [total / wall["max"], total / wall["min"]],
                "speedup": speedup,
                "speedup_range": [ref_s / wall["max"], ref_s / wall["min"]],
                **agreement,
                "tokens_generated": sum(r["tokens_generated"] for r in replies[name]),
                "goal_met": speedup >= SPEEDUP_GOAL and agreement["identical_parsed_share"] >= IDENTICAL_GOAL,
            }
        result["repeats"] = repeats
        result["engines"] = engine_verdict(result["variants"], model)
        results[total] = result
    return results


def engine_verdict(variants: dict, model) -> dict:
    """The two engines side by side (when both ran): which was faster in every round, and what
    `eval_backend: auto` chooses on this device."""
    ours, theirs = (variants.get(ENGINE_VARIANTS[e]) for e in ("peftlab", "transformers"))
    engine = choose_engine("auto", model)
    verdict = {"auto_chooses": engine.name, "auto_reason": engine.reason, "device": str(model.device)}
    if ours and theirs:
        # paired per round: the batched decoder's speed over continuous batching's
        ratios = [b / a for a, b in zip(ours["wall_s_runs"], theirs["wall_s_runs"])]
        ratio = spread(ratios)
        ahead = "peftlab" if ratio["min"] > 1 else "transformers" if ratio["max"] < 1 else None
        verdict.update(
            {
                "peftlab_over_transformers": ratio["median"],
                "peftlab_over_transformers_range": [ratio["min"], ratio["max"]],
                "ahead_in_every_round": ahead,
                "auto_agrees": ahead is not None and ahead == engine.name,
            }
        )
    return verdict


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
        if name != "batched":
            tail = name.removeprefix("batched_")
            keys[f"eval_speedup_{tail}{sfx}"] = variant["speedup"]
            keys[f"eval_speedup_{tail}_range{sfx}"] = variant["speedup_range"]
            keys[f"eval_identical_share_{tail}{sfx}"] = variant["identical_parsed_share"]
            keys[f"eval_identical_reply_share_{tail}{sfx}"] = variant["identical_reply_share"]
    if "batched" in variants:
        keys[f"eval_speedup_range{sfx}"] = variants["batched"]["speedup_range"]
        keys[f"eval_items_per_s{sfx}"] = {name: v["items_per_s"] for name, v in variants.items()}
    keys[f"eval_engines{sfx}"] = result.get("engines")
    keys["eval_repeats"] = result.get("repeats", 1)
    return keys
