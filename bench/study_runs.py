"""A study's records summarised: every run's status and figures, the items per task of its
evaluations, its wall time from the executed notebooks, and whether the records are as new
as the code (a number from an older run of older code is not reported as this one's).

    .venv/bin/python -m bench.study_runs smoke --out outputs/bench/smoke-summary.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from peftlab.core.paths import repo_root

# What decides a study's results: a record older than a change in these is stale.
CODE_PATHS = ("lib", "notebooks", "workflow", "params", "report")
MAX_GAP_S = 600  # a longer pause between two jobs: the records come from more than one session


def _time(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def job_intervals(study_dir: Path) -> list[tuple[str, datetime, datetime]]:
    """(notebook, start, end) of each executed notebook of the study (papermill's metadata)."""
    intervals = []
    for path in sorted([*study_dir.glob("runs/*/*.ipynb"), *study_dir.glob("report/*.ipynb")]):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("papermill", {})
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("start_time") and meta.get("end_time"):
            intervals.append((str(path.relative_to(study_dir)), _time(meta["start_time"]), _time(meta["end_time"])))
    return intervals


def wall_time(intervals: list[tuple[str, datetime, datetime]], max_gap_s: float = MAX_GAP_S) -> dict:
    """First start to last end, the time some job ran, and the longest pause between jobs."""
    if not intervals:
        return {"wall_s": None, "busy_s": None, "jobs": 0, "largest_gap_s": None, "one_session": False}
    ordered = sorted(intervals, key=lambda item: item[1])
    busy, gap = 0.0, 0.0
    start, end = ordered[0][1], ordered[0][2]
    for _, s, e in ordered[1:]:
        if s > end:
            busy += (end - start).total_seconds()
            gap = max(gap, (s - end).total_seconds())
            start, end = s, e
        else:
            end = max(end, e)
    busy += (end - start).total_seconds()
    wall = (max(e for _, _, e in ordered) - ordered[0][1]).total_seconds()
    return {
        "wall_s": wall,
        "busy_s": busy,
        "jobs": len(ordered),
        "largest_gap_s": gap,
        "one_session": gap <= max_gap_s,
        "first_start": ordered[0][1].isoformat(),
        "last_end": max(e for _, _, e in ordered).isoformat(),
    }


def items_per_task(eval_records: list[dict]) -> dict:
    """Items per task of the finished evaluations: per task the minimum over models, and the
    minimum over tasks."""
    by_task: dict[str, int] = {}
    for record in eval_records:
        if record.get("status") == "ok" and record.get("n_items") is not None:
            task = record["task"]
            by_task[task] = min(by_task.get(task, record["n_items"]), record["n_items"])
    return {"by_task": by_task, "min": min(by_task.values()) if by_task else None}


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def code_changes_since(commit: str) -> list[str] | None:
    """Files under CODE_PATHS that differ between `commit` and the working tree (None: unknown)."""
    out = _git("diff", "--name-only", commit, "--", *CODE_PATHS)
    return None if out is None else [line for line in out.splitlines() if line]


def freshness(records: list[dict], changes_since=None) -> dict:
    """Whether the records were written by the code as it is now: `current`, `stale` (the code
    changed since, or the commit is unknown) or `missing` (no record). `changes_since(commit)`
    lists the code files changed since a commit (default: `code_changes_since`, from git)."""
    changes_since = changes_since or code_changes_since
    if not records:
        return {"status": "missing", "why": "no record"}
    commits = sorted({(r.get("meta", {}).get("git") or {}).get("commit") or "unknown" for r in records})
    changed: dict[str, list[str] | None] = {}
    for commit in commits:
        changed[commit] = None if commit == "unknown" else changes_since(commit)
    stale = {c: files for c, files in changed.items() if files is None or files}
    if stale:
        why = "; ".join(
            f"records of commit {c[:12]}: "
            + (
                "commit unknown here"
                if files is None
                else f"{len(files)} code file(s) changed since, e.g. {', '.join(files[:3])}"
            )
            for c, files in stale.items()
        )
        return {"status": "stale", "why": why, "commits": commits}
    return {
        "status": "current",
        "commits": commits,
        "dirty": any((r.get("meta", {}).get("git") or {}).get("dirty") for r in records),
    }


def read_records(study_dir: Path) -> tuple[list[dict], list[dict]]:
    """(train records, evaluation records) of a study's runs; unreadable files are skipped."""
    train, evals = [], []
    for path in sorted(study_dir.glob("runs/*/*.json")):
        if path.name != "train.json" and not path.name.startswith("eval-"):
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        record["_run"] = path.parent.name
        (train if path.name == "train.json" else evals).append(record)
    return train, evals


def _run_row(record: dict) -> dict:
    row = {
        "run": record["_run"],
        "kind": record.get("kind"),
        "status": record.get("status"),
        "device": (record.get("meta") or {}).get("device"),
        "timings": record.get("timings"),
        "memory": record.get("memory"),
    }
    if record.get("status") != "ok":
        row["error"] = {k: (record.get("error") or {}).get(k) for k in ("type", "message", "phase")}
    elif record.get("kind") == "train":
        row.update(
            method=record["config"]["method"],
            dtype=record["model"].get("dtype"),
            optimizer_steps=record.get("optimizer_steps"),
            tokens_per_s=record.get("tokens_per_s"),
            final_loss=record.get("final_loss"),
            bf16_autocast=record.get("bf16_autocast"),
        )
    else:
        row.update(
            task=record.get("task"),
            n_items=record.get("n_items"),
            parse_rate=record.get("parse_rate"),
            items_per_s=(record.get("throughput") or {}).get("items_per_s"),
            memory_batched=record.get("memory_batched"),
        )
    return row


def study_summary(study_dir: Path, expected: list[str] | None = None) -> dict:
    """Everything above for one study folder; `expected` lists the record files (relative to
    the folder) the study's plan asks for, to name the missing ones."""
    train, evals = read_records(study_dir)
    present = {f"runs/{r['_run']}/train.json" for r in train} | {
        f"runs/{r['_run']}/eval-{r.get('task')}.json" for r in evals
    }
    missing = sorted(set(expected or []) - present)
    records = train + evals
    return {
        "study_dir": str(study_dir),
        "records": len(records),
        "status": {s: sum(r.get("status") == s for r in records) for s in ("ok", "failed")},
        "missing": missing,
        "items_per_task": items_per_task(evals),
        "wall": wall_time(job_intervals(study_dir)),
        "freshness": freshness(records),
        "runs": [_run_row(r) for r in records],
    }


def _split(study_dir: Path, train: list[dict], evals: list[dict]) -> dict:
    """Where the time went, summed from the records."""
    split = {"load_s": 0.0, "train_s": 0.0, "save_s": 0.0, "generate_s": 0.0, "latency_s": 0.0}
    for record in train:
        for key in ("load_s", "train_s", "save_s"):
            split[key] += (record.get("timings") or {}).get(key) or 0.0
    loads: dict[str, float] = {}  # one load per evaluation job: its tasks' records repeat it
    for record in evals:
        loads[record["_run"]] = (record.get("timings") or {}).get("load_s") or 0.0
        split["generate_s"] += (record.get("timings") or {}).get("generate_s") or 0.0
        items = study_dir / "runs" / record["_run"] / f"items-{record.get('task')}.parquet"
        if items.is_file():
            import pandas as pd

            split["latency_s"] += float(pd.read_parquet(items)["latency_s"].sum())
    split["load_s"] += sum(loads.values())
    return split


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def learning_check(study_dir: Path) -> list[dict]:
    """Whether each trained run learned its training task: its training loss over the first and
    the last quarter of its logged steps, and its in-domain score against the untuned base's on the same items
    (paired cluster bootstrap, Holm over the runs, as the report's questions do). `learned`:
    the loss fell and the score rose beyond the interval; None where the data cannot tell."""
    from peftlab.analysis.comparisons import Analysis
    from peftlab.analysis.study_records import load_study

    records = load_study(study_dir)
    analysis = Analysis(records)
    rows = analysis.in_domain()
    bases = {row["config"]: analysis.untuned(row["base"]) for _, row in rows.iterrows()}
    comparisons = [
        analysis.compare(row["config"], bases[row["config"]], row["task"])
        for _, row in rows.iterrows()
        if bases[row["config"]] is not None
    ]
    if not comparisons:
        return []
    adjusted = analysis.adjust(comparisons, "learning")
    runs = records.trains.groupby("config")["model"].apply(list).to_dict()
    out = []
    for _, c in adjusted.iterrows():
        curves = [[p["loss"] for p in records.train_records[m].get("loss_curve") or []] for m in runs.get(c["a"], [])]
        # a logged step's loss is a few rows' loss: the first and last quarter of the steps, averaged
        first = [_mean(curve[: max(1, len(curve) // 4)]) for curve in curves if curve]
        last = [_mean(curve[-max(1, len(curve) // 4) :]) for curve in curves if curve]
        loss_fell = bool(first) and sum(last) < sum(first)
        rose = c["verdict"] == "a better"
        out.append(
            {
                "config": c["a"],
                "task": c["task"],
                "loss_first": _mean(first) if first else None,
                "loss_last": _mean(last) if last else None,
                "metric": c["metric"],
                "score": c["a_value"],
                "base_score": c["b_value"],
                "diff": c["diff"],
                "ci_low": c["ci_low"],
                "ci_high": c["ci_high"],
                "n": int(c["n"]),
                "verdict": c["verdict"],
                "learned": (loss_fell and rose) if c["verdict"] != "insufficient data" else None,
            }
        )
    return out


def demo_summary(study: str = "demo", study_dir: Path | None = None, expected: list[str] | None = None) -> dict:
    """The demo's wall time and items per task, only when its records are complete, written by
    the code as it is now, and from one session; otherwise None with a note saying why."""
    study_dir = study_dir or repo_root() / "outputs" / study
    train, evals = read_records(study_dir)
    summary = study_summary(study_dir, expected)
    wall = summary["wall"]
    problems = []
    if not train and not evals:
        problems.append(f"no records in {study_dir}: run `make demo`")
    else:
        if summary["freshness"]["status"] != "current":
            problems.append(f"the records are older than the code ({summary['freshness']['why']}): rerun `make demo`")
        if summary["missing"]:
            problems.append(f"{len(summary['missing'])} record(s) missing, e.g. {summary['missing'][0]}")
        if wall["jobs"] == 0:
            problems.append("no executed notebook with papermill times")
        elif not wall["one_session"]:
            problems.append(
                f"the jobs ran in more than one session (a pause of {wall['largest_gap_s']:.0f} s): "
                f"remove {study_dir} and rerun `make demo` for one wall time"
            )
    split = _split(study_dir, train, evals) if (train or evals) else {}
    if wall["wall_s"] is not None and split:
        split["other_s"] = wall["wall_s"] - sum(split.values())  # papermill/kernel start-up, the workflow, the report
    ok = not problems
    learned = learning_check(study_dir) if ok else []
    return {
        "demo_learned": learned,
        "demo_wall_s": wall["wall_s"] if ok else None,
        "demo_items_per_task": summary["items_per_task"]["min"] if ok else None,
        "demo_note": "from this run's records and executed notebooks" if ok else "; ".join(problems),
        "detail": {**summary, "split": split},
    }


def expected_records(study: str) -> tuple[Path, list[str]]:
    """The study's output folder and the record files its plan asks for."""
    from peftlab.study.plan import load_plan

    plan = load_plan(study)
    files = [f"runs/{name}/train.json" for name in plan.train]
    files += [f"runs/{model}/eval-{task}.json" for model, task in plan.eval_targets()]
    return plan.out, files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study")
    parser.add_argument("--out", help="write the summary here (JSON) as well as to stdout")
    args = parser.parse_args(argv)
    from peftlab.core.files import write_json
    from peftlab.run.records import run_metadata

    folder, expected = expected_records(args.study)
    summary = {
        "kind": "bench",
        "status": "ok",
        "study": args.study,
        **study_summary(folder, expected),
        "meta": run_metadata(),
    }
    if args.out:
        write_json(args.out, summary)
    print(
        json.dumps(
            {k: summary[k] for k in ("study", "records", "status", "missing", "items_per_task", "wall", "freshness")},
            indent=1,
            default=str,
        )
    )
    return 0 if summary["records"] and not summary["missing"] and not summary["status"]["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
