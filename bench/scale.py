"""Paper scale without a download: every method on the published Qwen3-0.6B architecture.

For full fine-tuning, LoRA r256, DoRA r256 and VeRA r1024 on `random:qwen3-0.6b` (random
weights, the published shapes: the compute and memory per token are the paper model's, its
outputs are meaningless): one or two training steps through the project's own entry point
(`peftlab.run.train.run_training`; time, tokens/s and the record's peak memory: process RSS on a
CPU, the CUDA allocator's peak reserved / allocated on a GPU), then the merged model's greedy
decoding (`peftlab.run.generate.greedy_decode`) at batch 1 and at the evaluation batch, a fixed
number of new tokens (no end token counts: random weights rarely write one): seconds per
decode step and per generated token, the prefill apart.
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path

import torch

from peftlab.config import resolve_config
from peftlab.models.loading import load_model
from peftlab.run.generate import greedy_decode, render_prompts
from peftlab.run.memory import PhaseMemory
from peftlab.run.train import run_training
from peftlab.tasks.registry import eval_messages, load_rows

from .common import OUT, peak_memory_gb

BASE_MODEL = "random:qwen3-0.6b"
METHODS = {"full": None, "lora": 256, "dora": 256, "vera": 1024}  # method -> rank
TASK = "arc"  # the shortest rows and prompts of the three tasks

# Sizes per device: a GPU runs paper-like batches; a CPU a handful of short rows in minutes.
DEFAULTS = {
    "cuda": dict(dtype="bfloat16", n_train=16, batch_size=8, max_length=1024, new_tokens=32, eval_batch=None),
    "cpu": dict(dtype="float32", n_train=4, batch_size=2, max_length=256, new_tokens=16, eval_batch=4),
}
# The fewest new tokens that time a decode step: the clock's first stamp follows the prefill
# and the last token ends the reply unseen (StepClock), so the step from token 1 to token 2 is
# timed only when a third token follows.
MIN_NEW_TOKENS = 3


class StepClock:
    """A `stop` rule for `greedy_decode` that never stops and notes the time each decoding step
    hands its tokens over (the first call with a longer sequence). The tokens have reached the
    host by then (`greedy_decode` reads them with .tolist()), so on a GPU the times are
    synchronised. Step 1 follows the prefill; step k > 1 follows k - 1 decode forward passes."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.stamps: list[float] = []
        self._length = 0

    def __call__(self, sequence: list[int]) -> bool:
        if len(sequence) > self._length:
            self._length = len(sequence)
            self.stamps.append(self.clock())
        return False

    def split(self, started: float, batch: int) -> dict:
        """Prefill seconds, seconds per decode step and per generated token (a step writes
        `batch` tokens)."""
        steps = len(self.stamps) - 1
        per_step = (self.stamps[-1] - self.stamps[0]) / steps if steps > 0 else None
        return {
            "prefill_s": self.stamps[0] - started if self.stamps else None,
            "decode_steps": steps,
            "decode_s_per_step": per_step,
            "decode_s_per_token": per_step / batch if per_step is not None else None,
        }


def time_decode(model, tokenizer, prompts: list[str], *, new_tokens: int) -> dict:
    """Greedy decoding of `prompts` as one batch, exactly `new_tokens` per prompt."""
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    clock = StepClock()
    with PhaseMemory(model.device, label=f"decode peak (batch {len(prompts)})") as memory:
        started = time.perf_counter()
        # one token per sequence and step (no drafts): the decoding cost per token of the model itself
        sequences = greedy_decode(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            max_new_tokens=new_tokens,
            eos_ids=set(),
            stop=clock,
            draft_tokens=0,
        )
        wall = time.perf_counter() - started
    return {
        "batch": len(prompts),
        "prompt_tokens": int(batch["attention_mask"].sum()),
        "new_tokens": new_tokens,
        "tokens_generated": sum(len(s) for s in sequences),
        "wall_s": wall,
        **clock.split(started, len(prompts)),
        "memory": memory.result(),
    }


def _free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def scale_one(
    *,
    method: str,
    rank: int | None,
    base_model: str,
    device: str,
    dtype: str,
    n_train: int,
    batch_size: int,
    max_length: int,
    new_tokens: int,
    eval_batch: int,
    keep_models: bool,
) -> dict:
    """One method: its training steps, then its merged model's decoding at batch 1 and `eval_batch`."""
    name = method if rank is None else f"{method}-r{rank}"
    out_dir = OUT / "scale-runs" / name
    config = resolve_config(
        overrides=dict(
            base_model=base_model,
            method=method,
            rank=rank or 16,
            train_task=TASK,
            n_train=n_train,
            batch_size=batch_size,
            grad_accum=1,
            max_length=max_length,
            group_by_length=False,
            protocol="corrected",
            device=device,
            dtype=dtype,
            force=True,
            out_dir=str(out_dir),
        )
    )
    record = run_training(config=config)
    steps = record["optimizer_steps"]
    train = {
        "optimizer_steps": steps,
        "rows": record["n_rows"],
        "rows_too_long": record["n_rows_too_long"],
        "tokens": record["tokens"],
        "train_s": record["timings"]["train_s"],
        "s_per_step": record["timings"]["train_s"] / steps if steps else None,
        "tokens_per_s": record["tokens_per_s"],
        "bf16_autocast": record["bf16_autocast"],
        "memory": record["memory"],
        "peak_memory_gb": peak_memory_gb(record["memory"]),
        "trainable_params": record["trainable_params"],
        "total_params": record["total_params"],
        "adapter_bytes": record["adapter_bytes"],
        "merged_bytes": record["model"]["merged_bytes"],
        "load_s": record["timings"]["load_s"],
        "save_s": record["timings"]["save_s"],
        "final_loss": record["final_loss"],
    }
    _free(device)
    model, tokenizer, info = load_model(base_model=record["model"]["merged_path"], dtype=dtype, device=device)
    rows = load_rows(task=TASK, split="test", n=eval_batch)
    prompts = render_prompts(tokenizer, [eval_messages(TASK, row, "corrected") for row in rows])
    decode = {}
    for batch in sorted({1, eval_batch}):
        decode[f"batch_{batch}"] = time_decode(model, tokenizer, prompts[:batch], new_tokens=new_tokens)
    del model
    _free(device)
    if not keep_models:  # a merged 0.6B model is GBs on disk; its size is in the record
        for folder in ("model", "adapter"):
            shutil.rmtree(Path(out_dir) / folder, ignore_errors=True)
    return {"status": "ok", "method": method, "rank": rank, "model": info.to_dict(), "train": train, "decode": decode}


def bench_scale(
    *,
    base_model: str = BASE_MODEL,
    device: str,
    dtype: str | None = None,
    n_train: int | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    new_tokens: int | None = None,
    eval_batch: int | None = None,
    methods: dict | None = None,
    keep_models: bool = False,
    progress=None,
) -> dict:
    """Every method at paper scale; a method that fails (out of memory, say) is recorded as
    failed and the others still run. `progress(result)` is called after each method with the
    result so far (to write it before a time limit cuts the run short)."""
    sizes = dict(DEFAULTS["cuda" if device == "cuda" else "cpu"])
    for key, value in (
        ("dtype", dtype),
        ("n_train", n_train),
        ("batch_size", batch_size),
        ("max_length", max_length),
        ("new_tokens", new_tokens),
        ("eval_batch", eval_batch),
    ):
        if value is not None:
            sizes[key] = value
    if sizes["new_tokens"] < MIN_NEW_TOKENS:
        raise ValueError(
            f"new_tokens must be at least {MIN_NEW_TOKENS} to time a decode step, got {sizes['new_tokens']}"
        )
    if sizes["eval_batch"] is None:
        sizes["eval_batch"] = resolve_config()["eval_batch_size"]
    runs = {}
    for method, rank in (methods or METHODS).items():
        name = method if rank is None else f"{method}-r{rank}"
        print(f"scale: {name} on {base_model} ({device}, {sizes['dtype']})", flush=True)
        try:
            runs[name] = scale_one(
                method=method, rank=rank, base_model=base_model, device=device, keep_models=keep_models, **sizes
            )
        except Exception as error:  # recorded; the other methods still run
            runs[name] = {
                "status": "failed",
                "method": method,
                "rank": rank,
                "error": {"type": type(error).__name__, "message": str(error)[:2000]},
            }
            _free(device)
        if progress:
            progress(
                {
                    "base_model": base_model,
                    "device": device,
                    "task": TASK,
                    "sizes": sizes,
                    "runs": runs,
                    "complete": len(runs) == len(methods or METHODS),
                }
            )
    return {"base_model": base_model, "device": device, "task": TASK, "sizes": sizes, "runs": runs, "complete": True}


def scale_summary(result: dict) -> dict:
    """The summary.json entry `scale`: per method, the step, its memory and decoding."""
    summary = {"base_model": result["base_model"], "device": result["device"], "dtype": result["sizes"]["dtype"]}
    for name, run in result["runs"].items():
        if run["status"] != "ok":
            summary[name] = {"status": "failed", "error": run["error"]["type"]}
            continue
        train = run["train"]
        summary[name] = {
            "train_s_per_step": train["s_per_step"],
            "train_tokens_per_s": train["tokens_per_s"],
            "train_peak_memory_gb": train["peak_memory_gb"],
            "train_memory_label": train["memory"].get("label"),
            "trainable_params": train["trainable_params"],
            **{f"decode_s_per_token_{key}": d["decode_s_per_token"] for key, d in run["decode"].items()},
            **{f"decode_s_per_step_{key}": d["decode_s_per_step"] for key, d in run["decode"].items()},
        }
        if result["device"] == "cuda":
            summary[name]["train_peak_allocated_gb"] = train["memory"].get("peak_allocated_gb")
    return summary
