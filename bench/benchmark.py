"""Side-by-side benchmark: this project's pipeline against the reference study's settings.

Runs on one machine in one process, on the embedded model (or any base model), and writes
JSON under outputs/bench/ with a summary.json:

  matmul      the machine's measured matrix-multiply peak (float32 and bfloat16)
  eval        reference protocol (one prompt per generate(), max_new_tokens=1000) against
              batched, length-sorted generation with the same greedy decoding, and the same
              plus stopping once the first \\boxed{} answer is closed (the only part of a reply
              the reference scoring reads); items/s and the share of identical parsed answers
  train       reference configuration (batch 1 x gradient accumulation 8, float32) against the
              project's (batch 8, padding-free) and bf16 autocast layouts; same rows, same
              optimizer steps, full FT and LoRA: tokens/s, loss curves, MFU
  demo        the demo study's wall time from its records, split into load/train/generate/report
  cuda        the same on a GPU when one is present; skipped (not faked) otherwise

    .venv/bin/python bench/benchmark.py                 # everything, ~25 min on 2 CPU cores
    .venv/bin/python bench/benchmark.py --only eval     # one part
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time

import torch

from peftlab.config import repo_root, resolve_config
from peftlab.data import load_rows
from peftlab.generate import generate_batched, render_prompts, time_single
from peftlab.models import load_model
from peftlab.results import package_versions, run_metadata, write_json
from peftlab.scoring import extract_boxed, reference_extract_boxed
from peftlab.tasks import eval_messages
from peftlab.train import run_training

OUT = repo_root() / "outputs" / "bench"


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 10) -> dict:
    """Best sustained FLOP/s of a square matmul, per dtype, on this device and thread count."""
    result = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        torch.mm(a, b)  # warm-up
        best = math.inf
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            torch.mm(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
        result[str(dtype).replace("torch.", "")] = 2 * size**3 / best
    return {"size": size, "threads": torch.get_num_threads(), "flops": result}


def _reference_parse(reply: str) -> str | None:
    """The answer the reference scoring reads: the first box."""
    boxed = reference_extract_boxed(reply)
    return boxed.strip() if boxed is not None else None


def _share(pairs) -> float:
    pairs = list(pairs)
    return sum(a == b for a, b in pairs) / len(pairs)


def bench_eval(*, base_model: str, n_per_task: int, device: str, dtype: str, batch_size: int) -> dict:
    """Reference protocol vs batched generation over the same items and prompts."""
    model, tokenizer, info = load_model(base_model=base_model, dtype=dtype, device=device)
    prompts, tasks = [], []
    for task in ("arc", "openmath", "squad_v2"):
        rows = load_rows(task=task, split="test", n=n_per_task)
        prompts += render_prompts(tokenizer, [eval_messages(task, row, "reference") for row in rows])
        tasks += [task] * len(rows)
    max_new = 1000  # the reference study's setting, for every variant

    started = time.perf_counter()
    reference = time_single(model, tokenizer, prompts, max_new_tokens=max_new, desc="reference: batch 1")
    reference_s = time.perf_counter() - started

    variants = {}
    for name, stop in (("batched", False), ("batched_stop_at_first_box", True)):
        started = time.perf_counter()
        replies = generate_batched(model, tokenizer, prompts, max_new_tokens=max_new, batch_size=batch_size,
                                   desc=name, stop_at_first_box=stop)
        wall = time.perf_counter() - started
        same = [_reference_parse(a["reply"]) == _reference_parse(b["reply"]) for a, b in zip(reference, replies)]
        variants[name] = {
            "wall_s": wall, "items_per_s": len(prompts) / wall,
            "speedup": reference_s / wall,
            "identical_parsed_share": sum(same) / len(same),
            # the corrected scoring reads the last box; stopping at the first box may change it
            "identical_last_box_share": _share((extract_boxed(a["reply"]), extract_boxed(b["reply"]))
                                               for a, b in zip(reference, replies)),
            "identical_reply_share": _share((a["reply"], b["reply"]) for a, b in zip(reference, replies)),
            "tokens_generated": sum(r["tokens_generated"] for r in replies),
            "differing_items": [i for i, ok in enumerate(same) if not ok],
        }
    return {
        "model": info.to_dict(), "items": len(prompts), "per_task": n_per_task, "max_new_tokens": max_new,
        "batch_size": batch_size,
        "reference": {"wall_s": reference_s, "items_per_s": len(prompts) / reference_s,
                      "tokens_generated": sum(r["tokens_generated"] for r in reference),
                      "hit_max_new_tokens": sum(r["tokens_generated"] >= max_new for r in reference),
                      "parsed_share": sum(_reference_parse(r["reply"]) is not None for r in reference) / len(prompts)},
        "variants": variants,
    }


def bench_train(*, base_model: str, n_train: int, device: str, dtype: str, peaks: dict) -> dict:
    """Same rows, same effective batch (8) and optimizer steps: reference layout vs ours."""
    results = {}
    for method in ("full", "lora"):
        runs = {}
        for name, overrides in (
            ("reference", dict(batch_size=1, grad_accum=8, padding_free=False, mixed_precision="no")),
            ("project", dict(batch_size=8, grad_accum=1, padding_free=True, mixed_precision="auto")),
            ("project_bf16", dict(batch_size=8, grad_accum=1, padding_free=True, mixed_precision="bf16")),
            ("batch1_bf16", dict(batch_size=1, grad_accum=8, padding_free=False, mixed_precision="bf16")),
        ):
            config = resolve_config(overrides=dict(
                base_model=base_model, method=method, rank=16, train_task="openmath", n_train=n_train, group_by_length=False,
                protocol="corrected", device=device, dtype=dtype, max_length=512, force=True,
                out_dir=str(OUT / "train-runs" / f"{method}-{name}"), **overrides))
            record = run_training(config=config)
            params = record["total_params"]
            runs[name] = {
                "train_s": record["timings"]["train_s"], "tokens": record["tokens"],
                "tokens_per_s": record["tokens_per_s"], "optimizer_steps": record["optimizer_steps"],
                "loss_curve": [p["loss"] for p in record["loss_curve"]], "final_loss": record["final_loss"],
                # against the peak of the precision the matrix products ran in
                "mfu": 6 * params * record["tokens_per_s"] / peaks[
                    "bfloat16" if record["bf16_autocast"] or dtype == "bfloat16" else "float32"], "memory": record["memory"],
                "bf16_autocast": record["bf16_autocast"],
            }
        ref, ours = runs["reference"], runs["project"]
        results[method] = {
            "runs": runs,
            "speedup": ours["tokens_per_s"] / ref["tokens_per_s"],
            "speedups": {name: run["tokens_per_s"] / ref["tokens_per_s"] for name, run in runs.items()},
            "bf16_autocast": runs["project"]["bf16_autocast"],
            "final_loss_rel_diff": abs(ours["final_loss"] - ref["final_loss"]) / abs(ref["final_loss"]),
            "max_step_loss_rel_diff": max(abs(a - b) / abs(b) for a, b in zip(ours["loss_curve"], ref["loss_curve"])),
        }
    return results


def demo_split(study: str = "demo") -> dict:
    """The demo study's wall time and where it went, from its records and the workflow log."""
    out = repo_root() / "outputs" / study
    if not (out / "runs").is_dir():
        return {"skipped": f"no records in {out}: run `make demo` first"}
    split = {"load_s": 0.0, "train_s": 0.0, "save_s": 0.0, "generate_s": 0.0, "latency_s": 0.0}
    for path in out.glob("runs/*/train.json"):
        timings = json.loads(path.read_text()).get("timings", {})
        for key in ("load_s", "train_s", "save_s"):
            split[key] += timings.get(key, 0.0) or 0.0
    for path in out.glob("runs/*/eval-*.json"):
        record = json.loads(path.read_text())
        split["load_s"] += record.get("timings", {}).get("load_s", 0.0) or 0.0
        split["generate_s"] += record.get("timings", {}).get("generate_s", 0.0) or 0.0
        items = path.with_name(path.name.replace("eval-", "items-").replace(".json", ".parquet"))
        if items.is_file():
            import pandas as pd

            split["latency_s"] += float(pd.read_parquet(items)["latency_s"].sum())
    logs = sorted((repo_root() / ".snakemake" / "log").glob("*.snakemake.log"))
    wall = None
    for log in reversed(logs):
        text = log.read_text(errors="replace")
        if f"study={study}" in text or "demo" in text:
            stamps = re.findall(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", text)
            if len(stamps) >= 2:
                from datetime import datetime

                fmt = "%a %b %d %H:%M:%S %Y"
                wall = (datetime.strptime(stamps[-1], fmt) - datetime.strptime(stamps[0], fmt)).total_seconds()
                break
    report = out / "report" / "report.ipynb"
    if report.is_file():
        meta = json.loads(report.read_text()).get("metadata", {}).get("papermill", {})
        split["report_s"] = meta.get("duration")
    accounted = sum(v for v in split.values() if v)
    split["wall_s"] = wall
    split["other_s"] = (wall - accounted) if wall else None  # papermill/kernel start-up, workflow
    return split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="embedded")
    parser.add_argument("--only", choices=("matmul", "eval", "train", "demo", "cuda"), action="append")
    parser.add_argument("--eval-items", type=int, default=20, help="items per task in the eval benchmark")
    parser.add_argument("--eval-batch-size", type=int, default=None,
                        help="batch of the project's evaluation (default: eval_batch_size in params/defaults.yaml)")
    parser.add_argument("--train-rows", type=int, default=64, help="rows in the training benchmark")
    args = parser.parse_args(argv)
    parts = set(args.only or ("matmul", "eval", "train", "demo", "cuda"))
    OUT.mkdir(parents=True, exist_ok=True)
    summary_path = OUT / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}

    eval_batch = args.eval_batch_size or resolve_config()["eval_batch_size"]
    cpu = torch.device("cpu")
    peak = matmul_peak(cpu)
    write_json(OUT / "matmul.json", {"kind": "bench", "status": "ok", "meta": run_metadata("cpu"), **peak})
    summary["matmul_peak_flops"] = peak["flops"]["float32"]
    summary["matmul_peak_flops_bf16"] = peak["flops"]["bfloat16"]
    print(f"matmul peak: {peak['flops']['float32'] / 1e9:.0f} GFLOP/s fp32, "
          f"{peak['flops']['bfloat16'] / 1e9:.0f} GFLOP/s bf16 ({peak['threads']} threads)")

    if "eval" in parts:
        result = bench_eval(base_model=args.base_model, n_per_task=args.eval_items, device="cpu", dtype="float32",
                            batch_size=eval_batch)
        write_json(OUT / "eval.json", {"kind": "bench", "status": "ok", "meta": run_metadata("cpu"), **result})
        batched, boxed = result["variants"]["batched"], result["variants"]["batched_stop_at_first_box"]
        summary.update(eval_speedup=batched["speedup"], eval_identical_share=batched["identical_parsed_share"],
                       eval_identical_reply_share=batched["identical_reply_share"],
                       eval_speedup_stop_at_first_box=boxed["speedup"],
                       eval_identical_share_stop_at_first_box=boxed["identical_parsed_share"])
        print(f"eval: reference {result['reference']['items_per_s']:.3f} items/s; batched {batched['speedup']:.2f}x "
              f"({100 * batched['identical_parsed_share']:.1f} % identical parsed answers); + stop at first box "
              f"{boxed['speedup']:.2f}x ({100 * boxed['identical_parsed_share']:.1f} %)")

    if "train" in parts:
        result = bench_train(base_model=args.base_model, n_train=args.train_rows, device="cpu", dtype="float32",
                             peaks=peak["flops"])
        write_json(OUT / "train.json", {"kind": "bench", "status": "ok", "meta": run_metadata("cpu"), **result})
        summary.update(
            train_speedup_full=result["full"]["speedup"], train_speedup_lora=result["lora"]["speedup"],
            train_final_loss_rel_diff=max(result[m]["final_loss_rel_diff"] for m in ("full", "lora")),
            mfu_full=result["full"]["runs"]["project"]["mfu"], mfu_lora=result["lora"]["runs"]["project"]["mfu"],
            train_speedups_by_layout={m: result[m]["speedups"] for m in ("full", "lora")},
            train_final_loss_rel_diff_by_method={m: result[m]["final_loss_rel_diff"] for m in ("full", "lora")})
        for method in ("full", "lora"):
            r = result[method]
            print(f"train {method}: {r['speedup']:.2f}x tokens/s ({', '.join(f'{k} {v:.2f}x' for k, v in r['speedups'].items())}), final loss "
                  f"rel diff {100 * r['final_loss_rel_diff']:.2f} %, MFU {100 * r['runs']['project']['mfu']:.1f} %")

    if "demo" in parts:
        split = demo_split()
        write_json(OUT / "demo.json", {"kind": "bench", "status": "ok", "meta": run_metadata("cpu"), **split})
        summary["demo_wall_s"] = split.get("wall_s")
        summary["demo_split"] = split
        print(f"demo: {split}")

    if "cuda" in parts:
        if torch.cuda.is_available():
            cuda = torch.device("cuda")
            gpu_peak = matmul_peak(cuda, size=8192)
            result = {"matmul": gpu_peak,
                      "eval": bench_eval(base_model=args.base_model, n_per_task=args.eval_items, device="cuda",
                                         dtype="bfloat16", batch_size=eval_batch),
                      "train": bench_train(base_model=args.base_model, n_train=args.train_rows, device="cuda",
                                           dtype="bfloat16", peaks=gpu_peak["flops"])}
            write_json(OUT / "cuda.json", {"kind": "bench", "status": "ok", "meta": run_metadata("cuda"), **result})
            summary["cuda"] = {"eval_speedup": result["eval"]["variants"]["batched"]["speedup"],
                               "train_speedup_full": result["train"]["full"]["speedup"],
                               "train_speedup_lora": result["train"]["lora"]["speedup"],
                               "matmul_peak_flops_bf16": gpu_peak["flops"]["bfloat16"]}
        else:
            summary["cuda"] = "skipped: no CUDA device on this machine"
            print("cuda: skipped (no CUDA device)")

    summary["versions"] = package_versions()
    write_json(summary_path, summary)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
