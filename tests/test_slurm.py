"""The SLURM profile, for real, on a reachable SLURM (scripts/local-slurm.sh starts one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import make_project_copy
from peftlab.core.paths import repo_root

ENABLE = "start a single-node cluster with `sudo scripts/local-slurm.sh start` (.ci/run does)"


def slurm_reachable() -> bool:
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return False
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return probe.returncode == 0 and any(state.startswith(("idle", "mix", "alloc")) for state in probe.stdout.split())


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not slurm_reachable(), reason=f"no SLURM reachable: {ENABLE}")]


def _copy_root(where: Path, study_text: str | None = None) -> Path:
    return make_project_copy(where, {"slurmfail": study_text} if study_text else None)


def _run(root: Path, study: str, profile: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PEFTLAB_ROOT=str(root))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "peftlab.study.plan",
            "run",
            study,
            "--directory",
            str(root),
            "--profile",
            str(repo_root() / "profiles" / profile),
        ],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def _slurm_jobs(root: Path) -> dict[str, str]:
    """SLURM job id -> the job's log folder, from the executor's logs
    (.snakemake/slurm_logs/rule_<rule>/<wildcards>/<slurm job id>.log)."""
    return {p.stem: p.parent.name for p in (root / ".snakemake" / "slurm_logs").rglob("*.log") if p.stem.isdigit()}


def _job_times(job_ids) -> dict[str, tuple[datetime, datetime]]:
    """Start and end of finished SLURM jobs: squeue keeps them MinJobAge seconds (600 with
    scripts/local-slurm.sh); sacct answers where job accounting runs."""
    ids = ",".join(job_ids)
    for command in (
        ["squeue", "-j", ids, "-t", "all", "-h", "-o", "%i|%S|%e"],
        ["sacct", "-j", ids, "-X", "-n", "-P", "-o", "JobID,Start,End"],
    ):
        out = subprocess.run(command, capture_output=True, text=True)
        times = {}
        for line in out.stdout.split():
            job, start, end = line.split("|")
            try:
                times[job] = (datetime.fromisoformat(start), datetime.fromisoformat(end))
            except ValueError:
                continue
        if out.returncode == 0 and set(times) >= set(job_ids):
            return times
    raise AssertionError(f"neither squeue nor sacct knows the start and end of SLURM jobs {ids}")


def most_at_once(intervals) -> int:
    """The largest number of intervals that overlap at one instant (touching ends do not overlap)."""
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals], key=lambda e: (e[0], e[1])
    )  # at equal times an end comes before a start
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_overlap_counting():
    t = [datetime(2026, 1, 1, 0, 0, s) for s in range(10)]
    assert most_at_once([(t[0], t[2]), (t[2], t[4]), (t[4], t[6])]) == 1  # one after another
    assert most_at_once([(t[0], t[3]), (t[2], t[4]), (t[5], t[6])]) == 2
    assert most_at_once([(t[0], t[9]), (t[1], t[2]), (t[1], t[3])]) == 3


def _evals(out: Path) -> dict:
    return {
        f"{p.parent.name}/{p.name}": json.loads(p.read_text())["metrics"]["corrected"]
        for p in sorted(out.glob("runs/*/eval-*.json"))
    }


def test_smoke_study_runs_jobs_at_once_through_sbatch_and_equals_the_local_run(tmp_path):
    """Only profiles/slurm-local is in force (no local one-job-at-a-time limit on top): the
    two 1-CPU nodes' slots hold two jobs at once, and the results equal the local run's."""
    local_root, slurm_root = _copy_root(tmp_path / "l"), _copy_root(tmp_path / "s")
    local = _run(local_root, "smoke", "local")
    assert local.returncode == 0, local.stderr[-3000:]
    started = time.time()
    result = _run(slurm_root, "smoke", "slurm-local")
    wall = time.time() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using profile " in result.stderr and "workflow specific profile" not in result.stderr, [
        line for line in result.stderr.splitlines() if "profile" in line
    ]
    jobs = _slurm_jobs(slurm_root)
    submitted = {p.parent.parent.name for p in (slurm_root / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert {"rule_train", "rule_evaluate"} <= submitted, submitted
    times = _job_times(jobs)
    peak = most_at_once(times.values())
    print(f"smoke through profiles/slurm-local: {len(jobs)} SLURM jobs in {wall:.0f} s, at most {peak} at once")
    assert peak >= 2, f"the SLURM jobs ran one after another: {sorted(times.items())}"
    assert _evals(slurm_root / "outputs" / "smoke") == _evals(local_root / "outputs" / "smoke")
    assert (slurm_root / "outputs" / "smoke" / "report" / "report.pdf").is_file()


def test_a_failed_slurm_job_is_reported_with_its_log_and_the_rest_finish(tmp_path):
    """A run killed outright (as by the OOM killer) leaves no record: the job fails, Snakemake names its
    SLURM log, and the other jobs still finish. A run that fails inside Python is recorded as failed."""
    study = (
        "trained_base_models: [tiny]\nmethods: {lora: [4], vera: [4]}\ntrain_tasks: [arc]\n"
        "untuned_base_models: [tiny]\neval_tasks: [arc]\noverrides: {n_train: 4, batch_size: 2, "
        "max_length: 512, n_eval: 2, max_new_tokens: 4, n_latency: 1}\n"
        "method_overrides: {lora: {fault: 'kill@train:1'}, vera: {fault: 'oom@train:1'}}\n"
    )
    root = _copy_root(tmp_path, study)
    result = _run(root, "slurmfail", "slurm-local")
    out = root / "outputs" / "slurmfail"
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "Error in rule train" in log and "slurm_logs" in log, log[-3000:]
    assert not (out / "runs" / "arc-lora-r4-s0" / "train.json").exists()
    recorded = json.loads((out / "runs" / "arc-vera-r4-s0" / "train.json").read_text())
    assert recorded["status"] == "failed" and "out of memory" in recorded["error"]["message"]
    assert json.loads((out / "runs" / "base-tiny" / "eval-arc.json").read_text())["status"] == "ok"


def test_a_job_slurm_ends_at_its_time_limit_is_recorded_failed_and_retried_alone(tmp_path):
    """A training run far longer than its 1-minute `runtime`: SLURM ends it (TIMEOUT), the
    workflow records it as failed with SLURM's state, the other job finishes, a plain rerun
    keeps the record and RETRY_FAILED resubmits that job only."""
    study = (
        "trained_base_models: [tiny]\nmethods: {lora: [4]}\ntrain_tasks: [arc]\n"
        "untuned_base_models: [tiny]\neval_tasks: [arc]\noverrides: {n_train: 8, batch_size: 4, "
        "max_length: 512, n_eval: 2, max_new_tokens: 4, n_latency: 1, epochs: 100000}\n"
    )
    root = _copy_root(tmp_path, study)
    profile = tmp_path / "slurm-short"
    profile.mkdir()
    settings = (repo_root() / "profiles" / "slurm-local" / "config.yaml").read_text()
    (profile / "config.yaml").write_text(settings + "set-resources:\n  train:\n    runtime: 1\n")
    env = dict(os.environ, PEFTLAB_ROOT=str(root))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "peftlab.study.plan",
            "run",
            "slurmfail",
            "--directory",
            str(root),
            "--profile",
            str(profile),
        ],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = result.stdout + result.stderr
    out = root / "outputs" / "slurmfail"
    assert result.returncode != 0
    assert "TIMEOUT" in log and "recorded as failed (ended by SLURM)" in log, log[-3000:]
    record = json.loads((out / "runs" / "arc-lora-r4-s0" / "train.json").read_text())
    assert record["status"] == "failed" and record["error"]["type"] == "SlurmTimeLimit", record["error"]
    assert "state TIMEOUT" in record["error"]["message"] and record["error"]["slurm"]["job_id"].isdigit()
    assert json.loads((out / "runs" / "base-tiny" / "eval-arc.json").read_text())["status"] == "ok"

    def dry_run(*config: str) -> str:
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "snakemake"),
                "-s",
                str(root / "workflow" / "Snakefile"),
                "--directory",
                str(root),
                "--profile",
                str(profile),
                "-n",
                "--config",
                "study=slurmfail",
                *config,
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout + done.stderr

    plain = dry_run()  # the failed record is kept: its evaluation (failed upstream) and the report remain
    assert "rule train:" not in plain and "model=arc-lora-r4-s0, task=arc" in plain, plain[-3000:]
    retry = dry_run("retry_failed=1")
    assert "rule train:" in retry and "run=arc-lora-r4-s0" in retry
    assert "model=base-tiny" not in retry  # what finished is not redone
