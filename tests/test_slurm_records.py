"""Jobs SLURM ended (time limit, out of memory) are recorded as failed: the parts that need no cluster."""

from __future__ import annotations

import json
import os
import time

import pytest

from conftest import make_project_copy
from peftlab.study.plan import load_plan
from peftlab.study.slurm import classify, newest_log, record_slurm_failures

TIME_LIMIT = "slurmstepd: error: *** JOB 12 ON node7 CANCELLED AT 2026-11-30T06:01:02 DUE TO TIME LIMIT ***"
OOM = "slurmstepd: error: Detected 1 oom_kill event in StepId=13.batch. Some of the step tasks have been OOM Killed."


@pytest.mark.parametrize(
    "state,log,expected",
    [
        ("TIMEOUT", "", ("TIMEOUT", None)),
        ("TIMEOUT", f"Executing Cell 7\n{TIME_LIMIT}\n", ("TIMEOUT", TIME_LIMIT)),
        (None, TIME_LIMIT, ("TIMEOUT", TIME_LIMIT)),  # squeue has forgotten the job: the log says it
        ("CANCELLED", TIME_LIMIT, ("TIMEOUT", TIME_LIMIT)),
        ("OUT_OF_MEMORY", OOM, ("OUT_OF_MEMORY", OOM)),
        ("FAILED", OOM, ("OUT_OF_MEMORY", OOM)),
        ("FAILED", "torch.OutOfMemoryError: injected fault: out of memory", None),  # the run records that itself
        ("FAILED", "Traceback ...\nKilled", None),  # a crash: redone by the next run, not recorded
        ("CANCELLED", "", None),  # cancelled by a person: redone
        ("COMPLETED", "", None),
        (None, "", None),
    ],
)
def test_only_jobs_slurm_ended_for_a_limit_count(state, log, expected):
    assert classify(state, log) == expected


def test_the_newest_job_of_this_run_decides(tmp_path):
    folder = tmp_path / "rule_train" / "arc-lora-r4-s0"
    folder.mkdir(parents=True)
    for job_id in (9, 31, 120):
        (folder / f"{job_id}.log").write_text("")
    assert newest_log(folder, 0).name == "120.log"  # numerically newest, not "9" as text
    old = time.time() - 3600
    os.utime(folder / "120.log", (old, old))
    assert newest_log(folder, time.time() - 60).name == "31.log"  # a job of an earlier run does not count
    assert newest_log(tmp_path / "absent", 0) is None


def test_a_timed_out_train_job_and_evaluation_get_failed_records(tmp_path, monkeypatch):
    """The workflow's onerror handler on fake SLURM logs (squeue not asked: no cluster here)."""
    root = make_project_copy(tmp_path)
    monkeypatch.setenv("PEFTLAB_ROOT", str(root))
    monkeypatch.setattr("peftlab.study.slurm.job_state", lambda job_id: (None, None))
    plan = load_plan("smoke")
    logs = root / ".snakemake" / "slurm_logs"
    (logs / "rule_train" / "arc-lora-r4-s0").mkdir(parents=True)
    (logs / "rule_train" / "arc-lora-r4-s0" / "41.log").write_text(f"Executing Cell 7\n{TIME_LIMIT}\n")
    (logs / "rule_train" / "arc-vera-r8-s0").mkdir(parents=True)
    (logs / "rule_train" / "arc-vera-r8-s0" / "42.log").write_text("Traceback: a crash\n")
    (logs / "rule_evaluate" / "base-tiny_squad_v2").mkdir(parents=True)
    (logs / "rule_evaluate" / "base-tiny_squad_v2" / "43.log").write_text(OOM + "\n")
    written = record_slurm_failures(plan, logdir=logs, since=0)
    runs = plan.out / "runs"
    assert sorted(written) == sorted(
        [runs / "arc-lora-r4-s0" / "train.json", runs / "base-tiny" / "eval-squad_v2.json"]
    )
    train = json.loads((runs / "arc-lora-r4-s0" / "train.json").read_text())
    assert train["status"] == "failed" and train["error"]["type"] == "SlurmTimeLimit"
    assert (
        "SLURM job 41 ended with state TIMEOUT" in train["error"]["message"]
        and "DUE TO TIME LIMIT" in train["error"]["message"]
        and "runtime" in train["error"]["message"]
    )
    assert train["config"]["method"] == "lora" and train["run"] == "arc-lora-r4-s0"
    evaluation = json.loads((runs / "base-tiny" / "eval-squad_v2.json").read_text())
    assert evaluation["status"] == "failed" and evaluation["task"] == "squad_v2"
    assert "out of memory" in evaluation["error"]["message"] and "mem_mb" in evaluation["error"]["message"]
    assert not (runs / "arc-vera-r8-s0" / "train.json").exists()  # a crash is redone, not recorded
    assert record_slurm_failures(plan, logdir=logs, since=0) == []  # a record is never overwritten
