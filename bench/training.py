"""Training layouts side by side: the reference study's against the project's.

The same rows, the same effective batch (8 rows per optimizer step) and the same number of
optimizer steps in every layout, for full fine-tuning and LoRA; each layout's speed, final
loss and peak memory come from its run's record (`peftlab.run.train.run_training`).

Every layout runs once per round, `repeats` rounds interleaved (A B C A B C ..., not
A A A B B B): a drifting machine (thermal state, other processes) then moves every layout of a
round alike, and each layout's speedup is its tokens/s over the same round's reference run
(a paired ratio). Medians and ranges over the rounds are reported, and each of the project's
levers pays only when its whole range lies above 1.0.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

from peftlab.config import resolve_config
from peftlab.methods.registry import get_method
from peftlab.run import train as train_module
from peftlab.run.train import run_training, training_layout

from .common import OUT, alternating, peak_memory_gb, rel_diff, spread

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
# The project's levers, each with the layout that is the project's with that one lever undone.
LEVERS = {
    "labelled_positions_only": "project_all_positions",  # lm_head_positions: labelled
    "no_gradient_checkpointing": "project_checkpointed",
    "packed_dropout_masks": "project_bernoulli_masks",  # dropout_masks; LoRA only (adapter dropout)
    "embedding_grad_in_place": "project_autograd_embedding",  # full FT only (the embedding trains)
}
# Levers built for memory rather than speed, and the benchmark that judges them on it.
MEMORY_LEVERS = {"embedding_grad_in_place": "python -m bench.lever_memory (peak RSS, a fresh process per run)"}

REPEATS = 3
LOSS_TOLERANCE = 0.02  # a layout does the same work when its final loss is within 2 % of the reference's
SPEEDUP_GOAL = 1.5


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


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what `platform` knows)."""
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or "unknown"


def round_order(names: list[str], round_index: int) -> list[str]:
    """The layouts of round `round_index` (0-based): the reference first, then the others in
    their given order, reversed every other round so that no layout always follows the reference."""
    return [REFERENCE, *alternating([name for name in names if name != REFERENCE], round_index)]


def paired_ratios(numerators: list, denominators: list) -> list:
    """numerator / denominator round by round; None for a round where either is missing."""
    return [a / b if a and b else None for a, b in zip(numerators, denominators, strict=True)]


def lever_verdict(ratios: list) -> dict:
    """Whether a lever pays, from its per-round ratios (project tokens/s over the tokens/s with
    the lever undone): only when the whole range lies above 1.0; a range below 1.0 costs."""
    s = spread(ratios)
    if not s["n"]:
        return {**s, "pays": False, "verdict": "not measured: no round with both runs"}
    figures = f"median {s['median']:.2f}×, range {s['min']:.2f}–{s['max']:.2f}×"
    if s["min"] > 1.0:
        verdict = f"pays ({figures})"
    elif s["max"] < 1.0:
        verdict = f"costs: {figures}"
    else:
        verdict = f"does not pay on this machine: range includes 1.0 ({figures})"
    return {**s, "pays": s["min"] > 1.0, "verdict": verdict}


def compare_layouts(runs: dict[str, dict], *, reference: str = REFERENCE, tolerance: float = LOSS_TOLERANCE) -> dict:
    """Each layout against the reference run: its paired tokens/s ratios per round with their
    median and range, the final-loss difference, whether that difference is within `tolerance`,
    peak memory; and the fastest layout (by median) whose loss is.

    `runs` maps a layout to a dict with tokens_per_s (a list, one per round: None where the run
    failed), final_loss and memory."""
    ref = runs[reference]
    layouts = {}
    for name, run in runs.items():
        speedups = paired_ratios(run["tokens_per_s"], ref["tokens_per_s"])
        s = spread(speedups)
        diff = rel_diff(run["final_loss"], ref["final_loss"])
        layouts[name] = {
            "speedups": speedups,
            "speedup": s["median"],
            "speedup_min": s["min"],
            "speedup_max": s["max"],
            "tokens_per_s": run["tokens_per_s"],
            "final_loss": run["final_loss"],
            "final_loss_rel_diff": diff,
            "loss_equivalent": diff is not None and diff <= tolerance,
            "peak_memory_gb": peak_memory_gb(run.get("memory")),
            "memory_label": (run.get("memory") or {}).get("label"),
            **({"same_as": run["same_as"]} if "same_as" in run else {}),
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


def compare_levers(runs: dict[str, dict], levers: dict[str, str] = LEVERS) -> dict:
    """Each lever's verdict from the paired ratios project tokens/s ÷ tokens/s with it undone.
    A lever whose undone layout resolves to the project's own settings does not act for this
    method (dropout masks without an adapter, say); one whose layout was not run is left out."""
    result = {}
    for lever, undone in levers.items():
        if undone not in runs:
            continue
        if runs[undone].get("same_as") == PROJECT:
            verdict = "does not act for this method: same settings as project"
            result[lever] = {"layout": undone, "acts": False, "pays": None, "verdict": verdict}
            continue
        ratios = paired_ratios(runs[PROJECT]["tokens_per_s"], runs[undone]["tokens_per_s"])
        verdict = lever_verdict(ratios)
        if lever in MEMORY_LEVERS and not verdict["pays"]:
            verdict["verdict"] += f"; a memory lever, judged on memory by {MEMORY_LEVERS[lever]}"
        result[lever] = {"layout": undone, "acts": True, "ratios": ratios, **verdict}
    return result


def _distinct_layouts(method: str, layouts: dict[str, dict], device: str) -> tuple[dict, dict]:
    """The layouts to run ({name: (overrides, lever undone in code)}) and those resolving to the
    same settings as an earlier one on this device ({name: that one}: `auto` chose it, or a lever
    that does not act for this method), measured once under the first name."""
    adapter = get_method(method).trains_adapter
    to_run, same_as, seen = {}, {}, {}
    for name, overrides in layouts.items():
        resolved = {**overrides, **training_layout(overrides, device)}
        if not adapter:  # no adapter, no adapter dropout: masks change nothing
            resolved.pop("dropout_masks")
        # an adapter freezes the embedding, so its gradient lever does not act
        undone = None if adapter else CODE_LEVERS_UNDONE.get(name)
        key = (tuple(sorted(resolved.items())), undone)
        if key in seen:
            same_as[name] = seen[key]
        else:
            seen[key] = name
            to_run[name] = (overrides, undone)
    return to_run, same_as


def _train_once(
    *, method: str, name: str, overrides: dict, undone: str | None, base_model, n_train, device, dtype, peaks
) -> dict:
    """One training run of one layout: its speed, loss and memory from the run's record."""
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
    return {
        "status": "ok",
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


def _layout_run(rounds: list[dict]) -> dict:
    """One layout's rounds in one entry: per-round speed (None for a failed round); the loss
    curve, final loss and memory of its first round that ran (the loss should not vary: the
    same seed, the same rows), and whether the final loss was identical in every round."""
    ran = [r for r in rounds if r["status"] == "ok"]
    first = ran[0] if ran else {}
    final_losses = [r["final_loss"] for r in ran]
    return {
        **{key: first.get(key) for key in ("layout", "tokens", "optimizer_steps", "bf16_autocast", "memory")},
        "loss_curve": first.get("loss_curve"),
        "final_loss": first.get("final_loss"),
        "final_loss_per_round": [r.get("final_loss") for r in rounds],
        "final_loss_identical_across_rounds": len(set(final_losses)) <= 1,
        "tokens_per_s": [r.get("tokens_per_s") for r in rounds],
        "train_s": [r.get("train_s") for r in rounds],
        "mfu": spread(r.get("mfu") for r in rounds)["median"],  # at the median tokens/s
        "errors": [{"round": i + 1, **r["error"]} for i, r in enumerate(rounds) if r["status"] != "ok"],
    }


def _method_result(rounds: dict[str, list[dict]], same_as: dict[str, str]) -> dict:
    """One method's comparison from its layouts' rounds so far."""
    runs = {name: _layout_run(layout_rounds) for name, layout_rounds in rounds.items()}
    runs.update({name: {**runs[first], "same_as": first} for name, first in same_as.items()})
    comparison = compare_layouts(runs)
    ref, ours = runs[REFERENCE], runs[PROJECT]
    project = comparison["layouts"][PROJECT]
    step_diffs = [abs(a - b) / abs(b) for a, b in zip(ours["loss_curve"] or [], ref["loss_curve"] or []) if b]
    return {
        "runs": runs,
        **comparison,
        "levers": compare_levers(runs),
        "speedup": project["speedup"],
        "speedup_min": project["speedup_min"],
        "speedup_max": project["speedup_max"],
        "final_loss_rel_diff": project["final_loss_rel_diff"],
        "max_step_loss_rel_diff": max(step_diffs, default=None),
        "speedup_goal": SPEEDUP_GOAL,
        "goal_met": bool(project["loss_equivalent"] and (project["speedup"] or 0) >= SPEEDUP_GOAL),
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
    repeats: int = REPEATS,
    progress=None,
) -> dict:
    """Every layout for each method, `repeats` interleaved rounds (`round_order`); `peaks`
    (matmul FLOP/s per dtype) gives each run's MFU. A run that raises is recorded as failed
    (its round's ratios are missing, the `failures` list names it) and the others still run.
    `progress(result)` is called after each round with the result so far."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    layouts = layouts or LAYOUTS
    plans = {method: _distinct_layouts(method, layouts, device) for method in methods}
    rounds = {method: {name: [] for name in plans[method][0]} for method in methods}
    failures = []
    for index in range(repeats):
        for method in methods:
            to_run, _ = plans[method]
            for name in round_order(list(to_run), index):
                overrides, undone = to_run[name]
                print(f"train: round {index + 1}/{repeats}, {method}, {name}", flush=True)
                try:
                    outcome = _train_once(
                        method=method,
                        name=name,
                        overrides=overrides,
                        undone=undone,
                        base_model=base_model,
                        n_train=n_train,
                        device=device,
                        dtype=dtype,
                        peaks=peaks,
                    )
                except Exception as error:  # recorded; the other layouts and rounds still run
                    failed = {"type": type(error).__name__, "message": str(error)[:2000]}
                    outcome = {"status": "failed", "error": failed}
                    failures.append(f"{method} {name} round {index + 1}: {failed['type']}: {failed['message'][:200]}")
                rounds[method][name].append(outcome)
        result = {
            "repeats": repeats,
            "rounds_done": index + 1,
            "complete": index + 1 == repeats,
            "cpu_model": cpu_model(),
            "failures": failures,
            "methods": {method: _method_result(rounds[method], plans[method][1]) for method in methods},
        }
        if progress:
            progress(result)
    return result


def train_summary(result: dict) -> dict:
    """The summary.json keys of the training part (speedups are medians over the rounds)."""
    by_method = result["methods"]
    loss_diffs = [r["final_loss_rel_diff"] for r in by_method.values() if r["final_loss_rel_diff"] is not None]
    return {
        **{f"train_speedup_{m}": r["speedup"] for m, r in by_method.items()},
        **{f"train_speedup_{m}_range": [r["speedup_min"], r["speedup_max"]] for m, r in by_method.items()},
        "train_repeats": result["rounds_done"],
        "cpu_model": result["cpu_model"],
        "train_final_loss_rel_diff": max(loss_diffs, default=None),
        "train_final_loss_identical_across_rounds": {
            m: all(run["final_loss_identical_across_rounds"] for run in r["runs"].values())
            for m, r in by_method.items()
        },
        **{f"mfu_{m}": r["runs"][PROJECT]["mfu"] for m, r in by_method.items()},
        "train_goal": f">= {SPEEDUP_GOAL}x tokens/s (median of the rounds' paired ratios) with the final loss "
        f"within {100 * LOSS_TOLERANCE:g} % of the reference layout (gradient checkpointing on)",
        "train_goal_met": {m: r["goal_met"] for m, r in by_method.items()},
        "train_fastest_loss_equivalent": {
            m: {"layout": r["fastest_loss_equivalent"], "speedup": r["fastest_loss_equivalent_speedup"]}
            for m, r in by_method.items()
        },
        "train_layouts": {
            m: {
                name: {
                    "speedup": layout["speedup"],
                    "speedup_range": [layout["speedup_min"], layout["speedup_max"]],
                    "final_loss_rel_diff": layout["final_loss_rel_diff"],
                    "peak_memory_gb": layout["peak_memory_gb"],
                }
                for name, layout in r["layouts"].items()
            }
            for m, r in by_method.items()
        },
        # levers that do not act for a method (dropout masks for full FT) are left out
        "train_levers": {
            m: {
                lever: {key: v[key] for key in ("median", "min", "max", "pays")}
                for lever, v in r["levers"].items()
                if v["acts"]
            }
            for m, r in by_method.items()
        },
        "train_failures": result["failures"],
    }
