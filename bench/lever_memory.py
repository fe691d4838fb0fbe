"""The in-place embedding gradient judged on what it is for: a training job's peak memory.

The lever (`peftlab.run.lean_training.embedding_grad_in_place`) computes the same gradients
as autograd; it exists so that, with a tied LM head, the head's vocabulary-sized gradient is
accumulated at once instead of being held through the backward pass. Its speed gain is within
the machine's noise (the `train` part's lever verdict), so its memory is measured here, where a
memory figure means something: each run in a fresh process (a process's RSS keeps what earlier
runs in it left behind), the lever on and undone alternating (ABAB...), on the demo's
heaviest job (full FT on SQuAD v2, the demo's settings).

    .venv/bin/python -m bench.lever_memory --repeats 3      # -> outputs/bench/lever_memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import OUT, alternating, spread
from peftlab.core.files import write_json
from peftlab.run.records import run_metadata

JOB = "squad_v2-full-s0"  # the demo's job with the highest peak memory


def _child(config_path: str, lever: str) -> None:
    """One training run in this (fresh) process, the lever on or undone."""
    from bench.training import _undone
    from peftlab.run.train import run_training

    config = json.loads(Path(config_path).read_text())
    with _undone("embedding_grad_in_place" if lever == "undone" else None):
        record = run_training(config=config)
    print(json.dumps({"peak_rss_gb": record["memory"]["peak_rss_gb"], "tokens_per_s": record["tokens_per_s"]}))


def _spread(values: list[float]) -> dict:
    return {**spread(values), "runs": values}


def demo_job_config(study: str = "demo", job: str = JOB) -> dict:
    from peftlab.study.plan import load_plan

    return dict(load_plan(study).train[job].config)


def measure(config: dict, *, job: str = JOB, repeats: int = 3) -> dict:
    """`repeats` rounds of one training run with the lever on and one with it undone, each in a
    fresh process, the order alternating between rounds."""
    runs: dict[str, list[dict]] = {"on": [], "undone": []}
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(repeats):
            for lever in alternating(("on", "undone"), index):
                path = Path(scratch) / "config.json"
                path.write_text(json.dumps({**config, "out_dir": str(Path(scratch) / lever), "force": True}))
                print(f"lever memory: round {index + 1}/{repeats}, lever {lever}", flush=True)
                done = subprocess.run(
                    [sys.executable, "-m", "bench.lever_memory", "--child", str(path), lever],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs[lever].append(json.loads(done.stdout.strip().splitlines()[-1]))
    peaks = {lever: [r["peak_rss_gb"] for r in rs] for lever, rs in runs.items()}
    # paired per round: memory the lever saves, and its speed against autograd's gradient
    saved = [undone - on for on, undone in zip(peaks["on"], peaks["undone"])]
    speed = [on["tokens_per_s"] / undone["tokens_per_s"] for on, undone in zip(runs["on"], runs["undone"])]
    return {
        "job": job,
        "repeats": repeats,
        "peak_rss_gb": {lever: _spread(values) for lever, values in peaks.items()},
        "saved_gb": _spread(saved),
        "speedup": _spread(speed),
        "pays_in_memory": min(saved) > 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "LEVER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    result = measure(demo_job_config(), repeats=args.repeats)
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "lever_memory.json", {"kind": "bench", "status": "ok", "meta": run_metadata("cpu"), **result})
    on, undone, saved = result["peak_rss_gb"]["on"], result["peak_rss_gb"]["undone"], result["saved_gb"]
    print(
        f"lever memory, {result['job']}: peak RSS {on['median']:.3f} GB with the lever, {undone['median']:.3f} GB "
        f"undone; saved {saved['median']:.3f} GB (range {saved['min']:.3f}-{saved['max']:.3f}); speed "
        f"{result['speedup']['median']:.2f}x (range {result['speedup']['min']:.2f}-{result['speedup']['max']:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
