"""Training layouts side by side: the reference study's against the project's.

The same rows, the same effective batch (8 rows per optimizer step) and the same number of
optimizer steps in every layout, for full fine-tuning and LoRA; each layout's speed, final
loss and peak memory come from its run's record (`peftlab.run.train.run_training`).
"""

from __future__ import annotations

import contextlib

from peftlab.config import resolve_config
from peftlab.methods.registry import get_method
from peftlab.run import train as train_module
from peftlab.run.train import run_training, training_layout

from .common import OUT, peak_memory_gb, rel_diff

# The reference study's layout, gradient checkpointing included (its training script turned it on),
# every position projected onto the vocabulary as its trainer did.
REFERENCE = "reference"
PROJECT = "project"
_AUTO = dict(batch_size="auto", grad_accum="auto", padding_free="auto", mixed_precision="auto")
_LEAN = dict(gradient_checkpointing=False, lm_head_positions="labelled")
LAYOUTS = {
    REFERENCE: dict(
        batch_size=1,
        grad_accum=8,
        padding_free=False,
        mixed_precision="no",
        gradient_checkpointing=True,
        lm_head_positions="all",
        dropout_masks="bernoulli",  # nn.Dropout's own masks
    ),
    # the project's defaults (params/defaults.yaml): the layout follows the device (train.training_layout)
    PROJECT: dict(**_AUTO, **_LEAN),
    # the project's layout with each of its other levers undone
    "project_all_positions": dict(**_AUTO, gradient_checkpointing=False, lm_head_positions="all"),
    "project_checkpointed": dict(**_AUTO, gradient_checkpointing=True, lm_head_positions="labelled"),
    "project_bernoulli_masks": dict(**_AUTO, **_LEAN, dropout_masks="bernoulli"),
    # the project's layout with the embedding's gradient left to autograd (CODE_LEVERS_UNDONE)
    "project_autograd_embedding": dict(**_AUTO, **_LEAN),
    # the two layouts `auto` chooses between, each on the other device too
    "batch8_padding_free": dict(batch_size=8, grad_accum=1, padding_free=True, mixed_precision="auto", **_LEAN),
    "batch1_accum8": dict(batch_size=1, grad_accum=8, padding_free=False, mixed_precision="auto", **_LEAN),
    "project_bf16": dict(**{**_AUTO, "mixed_precision": "bf16"}, **_LEAN),
}
# Levers without a configuration key (they compute the same gradients), undone in code for the
# layouts named here (the reference ran without them); only where they act: the in-place
# embedding gradient, when the embedding trains.
CODE_LEVERS_UNDONE = {REFERENCE: "embedding_grad_in_place", "project_autograd_embedding": "embedding_grad_in_place"}


@contextlib.contextmanager
def _undone(lever: str | None):
    """The training module's `lever` (a context manager it enters) replaced by one that does nothing."""
    if lever is None:
        yield
        return
    original = getattr(train_module, lever)
    setattr(train_module, lever, lambda *args, **kwargs: contextlib.nullcontext(False))
    try:
        yield
    finally:
        setattr(train_module, lever, original)


LOSS_TOLERANCE = 0.02  # a layout does the same work when its final loss is within 2 % of the reference's
SPEEDUP_GOAL = 1.5


def compare_layouts(runs: dict[str, dict], *, reference: str = REFERENCE, tolerance: float = LOSS_TOLERANCE) -> dict:
    """Each layout against the reference run: tokens/s ratio, final-loss difference, whether
    that difference is within `tolerance`, peak memory; and the fastest layout whose loss is.

    `runs` maps a layout to a dict with tokens_per_s, final_loss and memory (a record's entry)."""
    ref = runs[reference]
    layouts = {}
    for name, run in runs.items():
        diff = rel_diff(run["final_loss"], ref["final_loss"])
        layouts[name] = {
            "speedup": run["tokens_per_s"] / ref["tokens_per_s"]
            if run["tokens_per_s"] and ref["tokens_per_s"]
            else None,
            "final_loss": run["final_loss"],
            "final_loss_rel_diff": diff,
            "loss_equivalent": diff is not None and diff <= tolerance,
            "peak_memory_gb": peak_memory_gb(run.get("memory")),
            "memory_label": (run.get("memory") or {}).get("label"),
        }
    equivalent = [name for name, layout in layouts.items() if layout["loss_equivalent"] and layout["speedup"]]
    fastest = max(equivalent, key=lambda name: layouts[name]["speedup"]) if equivalent else None
    return {
        "reference": reference,
        "loss_tolerance": tolerance,
        "layouts": layouts,
        "fastest_loss_equivalent": fastest,
        "fastest_loss_equivalent_speedup": layouts[fastest]["speedup"] if fastest else None,
    }


def bench_train(
    *,
    base_model: str,
    n_train: int,
    device: str,
    dtype: str,
    peaks: dict,
    layouts: dict[str, dict] | None = None,
    methods=("full", "lora"),
) -> dict:
    """Every layout for each method; `peaks` (matmul FLOP/s per dtype) gives each run's MFU."""
    layouts = layouts or LAYOUTS
    results = {}
    for method in methods:
        runs, seen = {}, {}
        for name, overrides in layouts.items():
            resolved = {**overrides, **training_layout(overrides, device)}
            adapter = get_method(method).trains_adapter
            if not adapter:  # no adapter, no adapter dropout: masks change nothing
                resolved.pop("dropout_masks")
            # an adapter freezes the embedding, so its gradient lever does not act
            undone = None if adapter else CODE_LEVERS_UNDONE.get(name)
            key = (tuple(sorted(resolved.items())), undone)
            if key in seen:  # `auto` chose this layout on this device: measured once, under the first name
                runs[name] = {**runs[seen[key]], "same_as": seen[key]}
                continue
            seen[key] = name
            config = resolve_config(
                overrides=dict(
                    base_model=base_model,
                    method=method,
                    rank=16,
                    train_task="openmath",
                    n_train=n_train,
                    group_by_length=False,
                    protocol="corrected",
                    device=device,
                    dtype=dtype,
                    max_length=512,
                    force=True,
                    out_dir=str(OUT / "train-runs" / f"{method}-{name}"),
                    **overrides,
                )
            )
            with _undone(undone):
                record = run_training(config=config)
            bf16 = record["bf16_autocast"] or dtype == "bfloat16"
            runs[name] = {
                "layout": record["layout"],
                "train_s": record["timings"]["train_s"],
                "tokens": record["tokens"],
                "tokens_per_s": record["tokens_per_s"],
                "optimizer_steps": record["optimizer_steps"],
                "loss_curve": [p["loss"] for p in record["loss_curve"]],
                "final_loss": record["final_loss"],
                # against the peak of the precision the matrix products ran in
                "mfu": 6 * record["total_params"] * record["tokens_per_s"] / peaks["bfloat16" if bf16 else "float32"],
                "memory": record["memory"],
                "bf16_autocast": record["bf16_autocast"],
            }
        comparison = compare_layouts(runs)
        ref, ours = runs[REFERENCE], runs[PROJECT]
        project = comparison["layouts"][PROJECT]
        results[method] = {
            "runs": runs,
            **comparison,
            "speedup": project["speedup"],
            "final_loss_rel_diff": project["final_loss_rel_diff"],
            "max_step_loss_rel_diff": max(abs(a - b) / abs(b) for a, b in zip(ours["loss_curve"], ref["loss_curve"])),
            "speedup_goal": SPEEDUP_GOAL,
            "goal_met": bool(project["loss_equivalent"] and (project["speedup"] or 0) >= SPEEDUP_GOAL),
        }
    return results


def train_summary(result: dict) -> dict:
    """The summary.json keys of the training part."""
    methods = list(result)
    return {
        **{f"train_speedup_{m}": result[m]["speedup"] for m in methods},
        "train_final_loss_rel_diff": max(result[m]["final_loss_rel_diff"] for m in methods),
        **{f"mfu_{m}": result[m]["runs"][PROJECT]["mfu"] for m in methods},
        "train_goal": f">= {SPEEDUP_GOAL}x tokens/s with the final loss within {100 * LOSS_TOLERANCE:g} % "
        "of the reference layout (gradient checkpointing on)",
        "train_goal_met": {m: result[m]["goal_met"] for m in methods},
        "train_fastest_loss_equivalent": {
            m: {"layout": result[m]["fastest_loss_equivalent"], "speedup": result[m]["fastest_loss_equivalent_speedup"]}
            for m in methods
        },
        "train_layouts": {
            m: {
                name: {k: layout[k] for k in ("speedup", "final_loss_rel_diff", "peak_memory_gb")}
                for name, layout in result[m]["layouts"].items()
            }
            for m in methods
        },
    }
