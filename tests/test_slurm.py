"""The SLURM profile, for real, on a reachable SLURM (scripts/local-slurm.sh starts one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_project_copy
from peftlab.config import repo_root

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
    return subprocess.run([sys.executable, "-m", "peftlab.study", "run", study, "--directory", str(root),
                           "--profile", str(repo_root() / "profiles" / profile)],
                          cwd=repo_root(), env=env, capture_output=True, text=True, timeout=1800)


def _evals(out: Path) -> dict:
    return {f"{p.parent.name}/{p.name}": json.loads(p.read_text())["metrics"]["corrected"]
            for p in sorted(out.glob("runs/*/eval-*.json"))}


def test_smoke_study_runs_through_sbatch_and_equals_the_local_run(tmp_path):
    local_root, slurm_root = _copy_root(tmp_path / "l"), _copy_root(tmp_path / "s")
    local = _run(local_root, "smoke", "local")
    assert local.returncode == 0, local.stderr[-3000:]
    result = _run(slurm_root, "smoke", "slurm-local")
    assert result.returncode == 0, result.stderr[-3000:]
    logs = list((slurm_root / ".snakemake" / "slurm_logs").rglob("*.log"))
    # the executor keeps one log per job: .snakemake/slurm_logs/rule_<rule>/<wildcards>/<slurm job id>.log
    submitted = {part for p in logs for part in p.parts if part.startswith("rule_")}
    assert {"rule_train", "rule_evaluate"} <= submitted, submitted
    assert _evals(slurm_root / "outputs" / "smoke") == _evals(local_root / "outputs" / "smoke")
    assert (slurm_root / "outputs" / "smoke" / "report" / "report.pdf").is_file()


def test_a_failed_slurm_job_is_reported_with_its_log_and_the_rest_finish(tmp_path):
    """A run killed outright (as by the OOM killer) leaves no record: the job fails, Snakemake names its
    SLURM log, and the other jobs still finish. A run that fails inside Python is recorded as failed."""
    study = ("trained_base_models: [tiny]\nmethods: {lora: [4], vera: [4]}\ntrain_tasks: [arc]\n"
             "untuned_base_models: [tiny]\neval_tasks: [arc]\noverrides: {n_train: 4, batch_size: 2, "
             "max_length: 512, n_eval: 2, max_new_tokens: 4, n_latency: 1}\n"
             "method_overrides: {lora: {fault: 'kill@train:1'}, vera: {fault: 'oom@train:1'}}\n")
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
