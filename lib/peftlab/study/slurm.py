"""Jobs that SLURM itself ended (time limit, out of memory) get a failed record.

A job killed by SLURM cannot write its own record, and Snakemake removes the outputs of a
failed job. So when a run ends with errors, the workflow (its `onerror` handler) looks at
every train and evaluate job of the study that has no record: if the newest SLURM job
submitted for it in this run ended in TIMEOUT or OUT_OF_MEMORY (from `sacct` where job
accounting answers, else `squeue`, and from SLURM's own line in the job's log), it writes a
failed record naming SLURM's state, its reason and the log. A rerun then treats that job as
finished (failed); `RETRY_FAILED=1` (with more `runtime` or `mem_mb`) resubmits only those.
Jobs that failed for another reason (a crash, a cancellation) stay without a record and
are redone by the next run, as before.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from peftlab.core.files import write_json
from peftlab.run.evaluate import eval_hash, model_identity
from peftlab.run.records import failed_eval_record, git_state, package_versions, train_record_start
from peftlab.study.plan import job_train_hash

# SLURM job states that mean "SLURM ended the job for a resource limit": rerunning it as it
# is fails again, so it is recorded (the others are redone by the next run).
ENDED_BY_SLURM = {
    "TIMEOUT": ("SlurmTimeLimit", "time limit reached: give the rule more `runtime` in the profile"),
    "OUT_OF_MEMORY": ("SlurmOutOfMemory", "out of memory: give the rule more `mem_mb` in the profile"),
    "DEADLINE": ("SlurmDeadline", "deadline reached before the job could finish"),
}
# What slurmstepd writes into the job's log when it ends a job, for clusters whose job
# records have already expired from squeue.
LOG_SIGNS = (
    (re.compile(r"slurmstepd.*CANCELLED AT \S+ DUE TO TIME LIMIT"), "TIMEOUT"),
    (re.compile(r"slurmstepd.*(oom[-_]kill event|OOM Killed)", re.IGNORECASE), "OUT_OF_MEMORY"),
)


def _query(command: list[str]) -> str:
    if not shutil.which(command[0]):
        return ""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def job_state(job_id: str) -> tuple[str | None, str | None]:
    """(state, reason) of a SLURM job: sacct where accounting answers, else squeue (which
    keeps finished jobs for MinJobAge seconds); (None, None) when neither knows it."""
    for command in (
        ["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State,Reason"],
        ["squeue", "-j", job_id, "-t", "all", "-h", "-o", "%T|%r"],
    ):
        line = _query(command).splitlines()[:1]
        if line and "|" in line[0]:
            state, _, reason = line[0].partition("|")
            state = state.split()[0] if state.split() else ""  # "CANCELLED by 0" -> CANCELLED
            if state:
                return state, (reason.strip() if reason.strip() not in ("", "None") else None)
    return None, None


def classify(state: str | None, log_text: str) -> tuple[str, str | None] | None:
    """(state, SLURM's line from the log) when SLURM ended the job for a resource limit, else None."""
    for pattern, sign_state in LOG_SIGNS:
        line = next((ln.strip() for ln in log_text.splitlines() if pattern.search(ln)), None)
        if line:
            if state in (None, "FAILED", "CANCELLED"):  # squeue forgot it, or an older SLURM's name for it
                state = sign_state
            return (state, line) if state in ENDED_BY_SLURM else None
    return (state, None) if state in ENDED_BY_SLURM else None


def slurm_failure(log: Path) -> dict | None:
    """The failure of the SLURM job whose log is `log` (its name is the job id), if SLURM ended it."""
    job_id = log.stem
    state, reason = job_state(job_id)
    try:
        text = log.read_text(errors="replace")
    except OSError:
        text = ""
    found = classify(state, text)
    if found is None:
        return None
    state, line = found
    kind, advice = ENDED_BY_SLURM[state]
    said = "; ".join(part for part in (f"reason {reason}" if reason else None, line) if part)
    return {
        "type": kind,
        "phase": "slurm",
        "message": f"SLURM job {job_id} ended with state {state} ({advice})"
        + (f": {said}" if said else "")
        + f"; log {log}",
        "slurm": {"job_id": job_id, "state": state, "reason": reason, "log_line": line, "log": str(log)},
    }


def newest_log(folder: Path, since: float) -> Path | None:
    """The log of the newest SLURM job submitted for one target in this run (written after `since`)."""
    logs = (
        [p for p in folder.glob("*.log") if p.stem.isdigit() and p.stat().st_mtime >= since] if folder.is_dir() else []
    )
    return max(logs, key=lambda p: int(p.stem)) if logs else None


def _meta() -> dict:
    return {
        "versions": package_versions(),
        "git": git_state(),
        "host": socket.gethostname(),
        "device": None,
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "written_by": "the workflow, after SLURM ended the job (the job itself could not)",
    }


def record_slurm_failures(plan, *, logdir: str | Path = ".snakemake/slurm_logs", since: float = 0.0) -> list[Path]:
    """Write a failed record for every job of `plan` without one whose newest SLURM job
    (submitted after `since`) SLURM ended for a resource limit. Returns the records written."""
    logdir, written = Path(logdir), []
    for name, job in plan.train.items():
        path = plan.out / "runs" / name / "train.json"
        log = None if path.exists() else newest_log(logdir / "rule_train" / name, since)
        error = slurm_failure(log) if log else None
        if error:
            config = job.config
            record = train_record_start(config, run=name, config_hash=job_train_hash(plan, name))
            write_json(path, {**record, "error": error, "meta": _meta()})
            written.append(path)
    for model, task in plan.eval_targets():
        path = plan.out / "runs" / model / f"eval-{task}.json"
        log = None if path.exists() else newest_log(logdir / "rule_evaluate" / f"{model}_{task}", since)
        error = slurm_failure(log) if log else None
        if error:
            config = {**plan.models[model].config, "eval_tasks": [task]}
            trained = model in plan.train
            identity = model_identity(
                base_model=config["base_model"], run_dir=str(plan.out / "runs" / model) if trained else None
            )
            chash = eval_hash(config, task, identity)
            record = failed_eval_record(
                config, task=task, identity=identity, config_hash=chash, error=error, meta=_meta()
            )
            write_json(path, record)
            written.append(path)
    return written
