"""Side-by-side benchmark: this project's pipeline against the reference study's settings.

Runs on one machine in one process and writes JSON under outputs/bench/ with a summary.json:

  matmul      the machine's measured matrix-multiply peak (float32 and bfloat16)
  eval        reference protocol (one prompt per generate(), max_new_tokens=1000) against
              batched, length-sorted greedy decoding with the growing KV cache, the same with
              the per-step copying cache, and the same stopping once the first \\boxed{} closes;
              items/s and the share of identical parsed answers, at each --eval-items size
              (eval-<N>.json; default 60 and 200 items)
  train       the reference layout (batch 1 x gradient accumulation 8, float32, gradient
              checkpointing, every position projected onto the vocabulary, nn.Dropout's masks,
              autograd's embedding gradient) against the project's (the device's layout, only
              labelled positions projected, packed dropout masks on a CPU, the embedding's
              gradient added in place), the project's with each lever undone, both layouts
              `auto` chooses between, and bf16 autocast;
              same rows, same optimizer steps, full FT and LoRA, in --train-repeats rounds
              (every layout once per round, rounds interleaved): each round's tokens/s over
              the same round's reference run, median and range; final-loss difference, peak
              memory, MFU, and per lever whether it pays (its whole range above 1.0)
  demo        the demo study's wall time and items per task from its records, if they are
              complete and as new as the code (else the summary says why not)
  prefix      at the demo's evaluation settings: batched scoring with the prompts' shared
              prefix computed once against every prompt computed whole (prefix.json)
  scale       full FT, LoRA r256, DoRA r256 and VeRA r1024 on random:qwen3-0.6b: training
              steps (time, tokens/s, peak memory) and decode seconds per token at batch 1 and
              the evaluation batch, on the device present (scale.json)
  cuda        eval and train on a GPU when one is present; skipped (not faked) otherwise

    .venv/bin/python bench/benchmark.py                          # everything (an hour or more on 2 CPU cores)
    .venv/bin/python bench/benchmark.py --only eval --eval-items 6 --eval-max-new-tokens 32   # a quick check
    .venv/bin/python bench/benchmark.py --only train --train-repeats 3   # the training part (about an hour on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the project root on the path, for `bench`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.common import OUT, matmul_peak  # noqa: E402
from bench.evaluation import REFERENCE_MAX_NEW_TOKENS, VARIANTS, bench_eval, eval_summary  # noqa: E402
from bench.prefix import bench_prefix, prefix_summary  # noqa: E402
from bench.scale import METHODS as SCALE_METHODS  # noqa: E402
from bench.scale import MIN_NEW_TOKENS as SCALE_MIN_NEW_TOKENS  # noqa: E402
from bench.scale import bench_scale, scale_summary  # noqa: E402
from bench.study_runs import demo_summary, expected_records  # noqa: E402
from bench.training import REPEATS as TRAIN_REPEATS  # noqa: E402
from bench.training import bench_train, train_summary  # noqa: E402
from peftlab.config import resolve_config  # noqa: E402
from peftlab.core.files import write_json  # noqa: E402
from peftlab.run.records import package_versions, run_metadata

PARTS = ("matmul", "eval", "train", "demo", "prefix", "scale", "cuda")


def _record(device: str, result: dict) -> dict:
    return {"kind": "bench", "status": "ok", "meta": run_metadata(device), **result}


def _int_at_least(minimum: int, why: str):
    """An argparse type: an integer of at least `minimum`; a smaller one is refused, saying `why`."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum} ({why}), got {value}")
        return value

    parse.__name__ = "int"  # argparse's message for a non-integer names the type: "invalid int value"
    return parse


def _figure(value: float | None, spec: str) -> str:
    """`value` formatted by `spec`, or n/a for a figure that was not measured."""
    return "n/a" if value is None else format(value, spec)


def run_eval(args, summary: dict, eval_batch: int) -> None:
    results = bench_eval(
        base_model=args.base_model,
        sizes=args.eval_items,
        device="cpu",
        dtype="float32",
        batch_size=eval_batch,
        max_new_tokens=args.eval_max_new_tokens,
        variants={name: VARIANTS[name] for name in args.eval_variants},
        repeats=args.eval_repeats,
    )
    for total, result in results.items():
        write_json(OUT / f"eval-{total}.json", _record("cpu", result))
        summary.update(eval_summary(result))
        print_eval(result)


def print_eval(result: dict) -> None:
    """One size's table: items/s (median, range over the rounds), speedup, identical shares."""
    reference = result["reference"]
    print(
        f"eval, {result['items']} items, {result['repeats']} round(s): reference {reference['items_per_s']:.3f} items/s"
    )
    print(f"  {'variant':<28}{'items/s (range)':>26}{'speedup':>9}{'parsed same':>13}{'reply same':>12}")
    for name, v in result["variants"].items():
        low, high = v["items_per_s_range"]
        print(
            f"  {name:<28}{v['items_per_s']:>9.3f} ({low:.3f}-{high:.3f}){v['speedup']:>8.2f}x"
            f"{100 * v['identical_parsed_share']:>12.1f}%{100 * v['identical_reply_share']:>11.1f}%"
        )
    engines = result["engines"]
    if "peftlab_over_transformers" in engines:
        low, high = engines["peftlab_over_transformers_range"]
        print(
            f"  batched decoder / continuous batching: {engines['peftlab_over_transformers']:.2f}x "
            f"({low:.2f}-{high:.2f}); ahead in every round: {engines['ahead_in_every_round'] or 'neither'}"
        )
    print(f"  eval_backend auto chooses {engines['auto_chooses']} on {engines['device']}: {engines['auto_reason']}")


def run_train(args, summary: dict, peaks: dict) -> list[str]:
    """The train part; returns its failed runs (none when every run ran)."""

    def write(result):  # after each round: a run cut short by a time limit keeps what it measured
        write_json(OUT / "train.json", _record("cpu", result))

    result = bench_train(
        base_model=args.base_model,
        n_train=args.train_rows,
        device="cpu",
        dtype="float32",
        peaks=peaks,
        repeats=args.train_repeats,
        progress=write,
    )
    summary.update(train_summary(result))
    print(f"train on {result['cpu_model']}, {result['rounds_done']} round(s), each against its round's reference:")
    for method, r in result["methods"].items():
        print(f"train {method}: layout, median speedup (min-max), final-loss difference, peak memory")
        for name, v in r["layouts"].items():
            print(
                f"  {name:<27} {_figure(v['speedup'], '.2f')}x "
                f"({_figure(v['speedup_min'], '.2f')}-{_figure(v['speedup_max'], '.2f')}), "
                f"loss {_figure(v['final_loss_rel_diff'], '.2%')}, "
                f"{_figure(v['peak_memory_gb'], '.1f')} GB" + (f" (same as {v['same_as']})" if "same_as" in v else "")
            )
        for lever, v in r["levers"].items():
            print(f"  lever {lever} ({v['layout']} undone): {v['verdict']}")
        print(f"  fastest with the same loss: {r['fastest_loss_equivalent']}")
    for failure in result["failures"]:
        print(f"train failed: {failure}")
    return [f"train {failure}" for failure in result["failures"]]


def run_demo(summary: dict) -> None:
    try:
        folder, expected = expected_records("demo")
    except Exception as error:  # the demo study file cannot be read: say so, do not guess
        folder, expected = None, None
        print(f"demo: plan not readable ({error})")
    result = demo_summary("demo", folder, expected)
    write_json(OUT / "demo.json", _record("cpu", result))
    summary.update({k: result[k] for k in ("demo_wall_s", "demo_items_per_task", "demo_note")})
    summary["demo_split"] = result["detail"]["split"]
    print(f"demo: wall {result['demo_wall_s']}, items per task {result['demo_items_per_task']} ({result['demo_note']})")
    for row in result["demo_learned"]:
        print(
            f"  {row['config']} on {row['task']}: loss {row['loss_first']:.3f} -> {row['loss_last']:.3f}; "
            f"{row['metric']} {row['score']:.3f} vs base {row['base_score']:.3f} "
            f"(diff {row['diff']:+.3f}, interval {row['ci_low']:+.3f} to {row['ci_high']:+.3f}, n {row['n']}): "
            f"{row['verdict']}"
        )
    summary["demo_learned"] = {f"{r['config']} ({r['task']})": r["learned"] for r in result["demo_learned"]}


def run_prefix(args, summary: dict) -> None:
    from peftlab.study.plan import load_plan

    demo = next(iter(load_plan("demo").base.values())).config  # the untuned base's evaluation settings
    result = bench_prefix(
        base_model=args.base_model,
        n_items=demo["n_eval"],
        max_new_tokens=demo["max_new_tokens"],
        batch_size=demo["eval_batch_size"],
        device="cpu",
        dtype="float32",
    )
    write_json(OUT / "prefix.json", _record("cpu", result))
    summary.update(prefix_summary(result))
    tasks = ", ".join(
        f"{task} {r['speedup']:.2f}x ({r['shared_prefix_tokens']} shared tokens, "
        f"{100 * r['identical_reply_share']:.0f} % identical replies)"
        for task, r in result["tasks"].items()
    )
    print(f"prefix, demo settings ({demo['n_eval']} items per task): {result['speedup']:.2f}x; {tasks}")


def run_scale(args, summary: dict) -> list[str]:
    """The scale part; returns its failed methods (none when every method ran)."""
    device = "cuda" if args.scale_device == "auto" and torch.cuda.is_available() else args.scale_device
    device = "cpu" if device == "auto" else device
    methods = {m: SCALE_METHODS[m] for m in args.scale_methods} if args.scale_methods else None

    def write(result):  # after each method: a run cut short by a time limit keeps what it measured
        write_json(OUT / "scale.json", _record(device, result))

    result = bench_scale(
        device=device,
        n_train=args.scale_rows,
        batch_size=args.scale_batch,
        max_length=args.scale_max_length,
        new_tokens=args.scale_new_tokens,
        eval_batch=args.scale_eval_batch,
        methods=methods,
        keep_models=args.scale_keep_models,
        progress=write,
    )
    write(result)
    summary["scale"] = scale_summary(result)
    failures = []
    for name, run in result["runs"].items():
        if run["status"] != "ok":
            failures.append(f"scale {name}: {run['error']['type']}")
            print(f"scale {name}: failed ({run['error']['type']}: {run['error']['message'][:200]})")
            continue
        t = run["train"]
        decode = ", ".join(f"{key} {1000 * d['decode_s_per_token']:.1f} ms/token" for key, d in run["decode"].items())
        print(
            f"scale {name}: {t['optimizer_steps']} step(s), {t['s_per_step']:.1f} s/step, "
            f"{t['tokens_per_s']:.0f} tokens/s, peak {t['peak_memory_gb']:.2f} GB; decode {decode}"
        )
    return failures


def run_cuda(args, summary: dict, eval_batch: int) -> None:
    if not torch.cuda.is_available():
        summary["cuda"] = "skipped: no CUDA device on this machine"
        print("cuda: skipped (no CUDA device)")
        return
    gpu_peak = matmul_peak(torch.device("cuda"), size=8192)
    evals = bench_eval(
        base_model=args.base_model,
        sizes=args.eval_items,
        device="cuda",
        dtype="bfloat16",
        batch_size=eval_batch,
        max_new_tokens=args.eval_max_new_tokens,
    )
    train = bench_train(
        base_model=args.base_model, n_train=args.train_rows, device="cuda", dtype="bfloat16", peaks=gpu_peak["flops"]
    )
    write_json(OUT / "cuda.json", _record("cuda", {"matmul": gpu_peak, "eval": evals, "train": train}))
    summary["cuda"] = {
        **{k: v for r in evals.values() for k, v in eval_summary(r).items()},
        **{k: v for k, v in train_summary(train).items() if k.startswith("train_speedup")},
        "matmul_peak_flops_bf16": gpu_peak["flops"]["bfloat16"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="embedded", help="model of the eval and train parts")
    parser.add_argument("--only", choices=PARTS, action="append", help="run this part (repeatable); default: all")
    parser.add_argument(
        "--eval-items",
        type=int,
        nargs="+",
        default=[60, 200],
        metavar="N",
        help="evaluation sizes in items, each split evenly over arc, openmath, squad_v2 "
        "(60 = 20 per task, the summary's eval_speedup; any other N gives eval_speedup_N)",
    )
    parser.add_argument(
        "--eval-max-new-tokens",
        type=int,
        default=REFERENCE_MAX_NEW_TOKENS,
        help="generation cap of every eval variant (the reference's 1000; lower only for a quick check)",
    )
    parser.add_argument(
        "--eval-batch-size",
        type=int,
        default=None,
        help="batch of the project's evaluation (default: eval_batch_size in params/defaults.yaml)",
    )
    parser.add_argument(
        "--eval-variants",
        nargs="+",
        choices=tuple(VARIANTS),
        default=list(VARIANTS),
        help="the batched variants measured against the reference protocol (default: all)",
    )
    parser.add_argument(
        "--eval-repeats",
        type=_int_at_least(1, "every variant runs once per round"),
        default=1,
        help="interleaved rounds of the eval variants (median and range); the reference runs once",
    )
    parser.add_argument("--train-rows", type=int, default=64, help="rows in the training benchmark")
    parser.add_argument(
        "--train-repeats",
        type=_int_at_least(1, "every layout runs once per round"),
        default=TRAIN_REPEATS,
        metavar="N",
        help="rounds of the training benchmark, interleaved (every layout once per round); speedups are "
        f"medians of each round's ratio to its reference run (default {TRAIN_REPEATS})",
    )
    scale = parser.add_argument_group("scale", "defaults per device: bench/scale.py DEFAULTS")
    scale.add_argument("--scale-device", choices=("auto", "cpu", "cuda"), default="auto")
    scale.add_argument("--scale-methods", nargs="+", choices=tuple(SCALE_METHODS), default=None)
    scale.add_argument("--scale-rows", type=int, default=None, help="training rows (steps = rows / batch)")
    scale.add_argument("--scale-batch", type=int, default=None, help="training batch")
    scale.add_argument("--scale-max-length", type=int, default=None, help="longest training row (tokens)")
    scale.add_argument(
        "--scale-new-tokens",
        type=_int_at_least(SCALE_MIN_NEW_TOKENS, "fewer leave no decode step to time"),
        default=None,
        help=f"tokens decoded per prompt (at least {SCALE_MIN_NEW_TOKENS}: the first follows the prefill, "
        "the last ends the reply unseen, so the step timed lies between)",
    )
    scale.add_argument("--scale-eval-batch", type=int, default=None, help="the larger decode batch")
    scale.add_argument("--scale-keep-models", action="store_true", help="keep the merged models on disk")
    args = parser.parse_args(argv)
    parts = set(args.only or PARTS)
    OUT.mkdir(parents=True, exist_ok=True)
    summary_path = OUT / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}

    eval_batch = args.eval_batch_size or resolve_config()["eval_batch_size"]
    peak = matmul_peak(torch.device("cpu"))
    write_json(OUT / "matmul.json", _record("cpu", peak))
    summary["matmul_peak_flops"] = peak["flops"]["float32"]
    summary["matmul_peak_flops_bf16"] = peak["flops"]["bfloat16"]
    print(
        f"matmul peak: {peak['flops']['float32'] / 1e9:.0f} GFLOP/s fp32, "
        f"{peak['flops']['bfloat16'] / 1e9:.0f} GFLOP/s bf16 ({peak['threads']} threads)"
    )

    if "eval" in parts:
        run_eval(args, summary, eval_batch)
    failures = []  # of the train and scale parts: reported, and the exit status is 1
    if "train" in parts:
        failures += run_train(args, summary, peak["flops"])
    if "demo" in parts:
        run_demo(summary)
    if "prefix" in parts:
        run_prefix(args, summary)
    if "scale" in parts:
        failures += run_scale(args, summary)
    if "cuda" in parts:
        run_cuda(args, summary, eval_batch)

    summary["versions"] = package_versions()
    write_json(summary_path, summary)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=1))
    if failures:
        print(f"benchmark: {len(failures)} failed: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
