"""One evaluation through each evaluation engine (`eval_backend`), timed side by side.

Each engine evaluates the same model on the same items with the same settings (a fresh output
folder each, so nothing is reused); the result gives per engine the batched scoring's wall time
and items/s, the engine `auto` resolved to, and whether the engines wrote the same replies.
The GPU check runs it on the GPU (bench/gpu-check.sh); on a CPU it answers the same question
at the CPU's own sizes.

    .venv/bin/python -m bench.engines --device cuda --dtype bfloat16 --out outputs/bench/engines.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench.evaluation import TASKS
from peftlab.config import EVAL_BACKENDS, resolve_config
from peftlab.core.files import write_json
from peftlab.run.evaluate import run_evaluation
from peftlab.run.records import run_metadata


def time_engines(
    *, base_model: str, device: str, dtype: str, n_eval: int, max_new_tokens: int, batch_size: int
) -> dict:
    """Every `eval_backend` setting evaluated once (explicit engines first, then `auto`)."""
    engines, replies = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for setting in (*[b for b in EVAL_BACKENDS if b != "auto"], "auto"):
            out = Path(scratch) / setting
            config = resolve_config(
                overrides=dict(
                    base_model=base_model, device=device, dtype=dtype, protocol="corrected", eval_tasks=list(TASKS),
                    data_source="hf", n_eval=n_eval, max_new_tokens=max_new_tokens, eval_batch_size=batch_size,
                    n_latency=0, eval_backend=setting, out_dir=str(out), force=True,
                )
            )  # fmt: skip
            records = run_evaluation(config=config)
            wall = sum(r["throughput"]["wall_s"] for r in records.values())
            items = sum(r["throughput"]["items"] for r in records.values())
            engines[setting] = {
                "engine": next(iter(records.values()))["eval_backend"],
                "generate_s": wall,
                "items": items,
                "items_per_s": items / wall if wall else None,
                "per_task_s": {task: r["throughput"]["wall_s"] for task, r in records.items()},
                "peak_memory_batched": {task: r["memory_batched"] for task, r in records.items()},
            }
            replies[setting] = pd.concat(
                [pd.read_parquet(out / f"items-{task}.parquet")["reply"] for task in TASKS], ignore_index=True
            )
    same = replies["peftlab"] == replies["transformers"]
    return {
        "base_model": base_model,
        "device": device,
        "dtype": dtype,
        "n_eval_per_task": n_eval,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "engines": engines,
        "identical_reply_share": float(same.mean()),
        "peftlab_over_transformers": engines["transformers"]["generate_s"] / engines["peftlab"]["generate_s"],
        "auto_chooses": engines["auto"]["engine"]["name"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="random:qwen3-0.6b")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--n-eval", type=int, default=32, help="items per task")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = time_engines(
        base_model=args.base_model,
        device=args.device,
        dtype=args.dtype,
        n_eval=args.n_eval,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    write_json(args.out, {"kind": "bench", "status": "ok", "meta": run_metadata(args.device), **result})
    for setting, engine in result["engines"].items():
        print(
            f"engines: {setting} -> {engine['engine']['name']}: {engine['generate_s']:.1f} s, "
            f"{engine['items_per_s']:.2f} items/s"
        )
    print(
        f"engines: batched decoder / continuous batching {result['peftlab_over_transformers']:.2f}x, "
        f"{100 * result['identical_reply_share']:.1f} % identical replies; auto chooses {result['auto_chooses']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
