"""The study as a Snakemake workflow: expansion, a real smoke run, failure and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_project_copy
from peftlab.core.errors import ConfigError
from peftlab.core.paths import repo_root
from peftlab.study.plan import load_plan

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def study_command(study: str, *extra: str, root: Path | None = None) -> list[str]:
    """What `make study` runs: `peftlab study`, in the project root given."""
    return [
        str(Path(sys.executable).parent / "peftlab"),
        "study",
        study,
        "--directory",
        str(root or repo_root()),
        *extra,
    ]


def snakemake(study: str, *extra: str, root: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PEFTLAB_ROOT=str(root or repo_root()))
    return subprocess.run(
        study_command(study, *extra, root=root), cwd=repo_root(), env=env, capture_output=True, text=True, **kwargs
    )


@pytest.mark.parametrize(
    "eval_jobs, rule, expected", [("per_task", "evaluate", 48), ("per_model", "evaluate_model", 16)]
)
def test_paper_dry_run_lists_14_train_and_48_evaluations(eval_jobs, rule, expected):
    """48 evaluations: one job each on a cluster, or one job per model (16) for all its tasks."""
    plan = load_plan("paper")
    assert len(plan.train) == 14 and len(plan.eval_targets()) == 48
    out = subprocess.run(
        [
            SNAKEMAKE,
            "-s",
            str(repo_root() / "workflow" / "Snakefile"),
            "--profile",
            str(repo_root() / "profiles" / "local"),
            "--config",
            "study=paper",
            f"eval_jobs={eval_jobs}",
            "-n",
            "--forceall",
        ],
        cwd=repo_root(),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in out.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert counts["train"] == 14 and counts[rule] == expected


def test_run_names_are_readable_and_configs_follow_the_study():
    plan = load_plan("paper")
    job = plan.train["openmath-dora-r256-s0"]
    assert job.config["method"] == "dora" and job.config["rank"] == 256 and job.config["protocol"] == "reference"
    assert job.config["batch_size"] == 1 and job.config["grad_accum"] == 8 and job.config["learning_rate"] == 1e-5
    assert set(plan.base) == {"base-qwen3-0.6b", "base-qwen3-1.7b"}
    corrected = load_plan("paper-corrected")
    assert corrected.train["squad_v2-vera-r512-s2"].config["learning_rate"] == 4e-3


def test_shipped_studies_expand():
    for path in (repo_root() / "params" / "studies").glob("*.yaml"):
        assert load_plan(path.stem).models


def test_bad_study_files_are_explained(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trained_base_models: [tiny]\nmethods: {qlora: [4]}\ntrain_tasks: [arc]\n")
    with pytest.raises(ConfigError, match="'methods'.*qlora"):
        load_plan(str(bad))
    bad.write_text("trained_base_models: []\nuntuned_base_models: []\n")
    with pytest.raises(ConfigError, match="expands to no job"):
        load_plan(str(bad))
    bad.write_text("trained_base_models: [tiny]\nmethods: {lora: [0]}\ntrain_tasks: [arc]\n")
    with pytest.raises(ConfigError, match="'rank'"):
        load_plan(str(bad))
    with pytest.raises(ConfigError, match="known studies"):
        load_plan("no-such-study")


def _results(out: Path) -> dict:
    """Every evaluation's metrics and per-item replies, for comparing two runs of a study."""
    results = {}
    for path in sorted(out.glob("runs/*/eval-*.json")):
        record = json.loads(path.read_text())
        items = pd.read_parquet(path.with_name(path.name.replace("eval-", "items-").replace(".json", ".parquet")))
        key = f"{path.parent.name}/{path.stem}"
        results[key] = (
            record["status"],
            json.dumps(record["metrics"]["corrected"], sort_keys=True),
            tuple(items["reply"]),
        )
    return results


@pytest.mark.slow
def test_smoke_study_interrupted_and_resumed_equals_an_uninterrupted_run(tmp_path, smoke_study):
    whole, full = smoke_study
    assert full.returncode == 0, full.stderr[-3000:]
    reference = _results(whole / "outputs" / "smoke")
    assert len(reference) == 6 and all(status == "ok" for status, _, _ in reference.values())
    assert (whole / "outputs" / "smoke" / "report" / "report.pdf").is_file()

    # The same study in another copy, killed mid-run and started again.
    root = make_project_copy(tmp_path / "killed")
    env = dict(os.environ, PEFTLAB_ROOT=str(root))
    command = study_command("smoke", root=root)
    proc = subprocess.Popen(
        command, cwd=repo_root(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    # Jobs run one at a time: once a third job has started, the records written before it
    # started belong to finished jobs, which the rerun must not redo.
    runs = root / "outputs" / "smoke" / "runs"
    deadline = time.time() + 300
    while len(list(runs.glob("*/params-*.yaml"))) < 3 and time.time() < deadline:
        time.sleep(0.2)
    newest_start = max(p.stat().st_mtime for p in runs.glob("*/params-*.yaml"))
    finished = {p: p.read_text() for p in runs.glob("*/*.json") if p.stat().st_mtime < newest_start}
    time.sleep(2)  # mid-job, then kill everything
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished, "no job had finished before the kill"
    partial = list((root / "outputs" / "smoke").glob("runs/*/eval-*.json"))
    assert len(partial) < 6, "the study finished before it could be interrupted"
    for path in partial:  # whatever exists is complete
        assert json.loads(path.read_text())["status"] == "ok"
    resumed = subprocess.run(command, cwd=repo_root(), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert all(path.read_text() == text for path, text in finished.items())  # finished jobs not redone
    assert _results(root / "outputs" / "smoke") == reference


@pytest.mark.slow
def test_a_failing_run_is_recorded_and_the_rest_of_the_study_finishes(tmp_path):
    root = make_project_copy(
        tmp_path,
        {
            "failing": (
                "trained_base_models: [tiny]\nmethods: {lora: [4], vera: [4]}\ntrain_tasks: [arc]\neval_tasks: [arc]\n"
                "overrides: {n_train: 4, batch_size: 4, max_length: 512, n_eval: 2, max_new_tokens: 4, n_latency: 1}\n"
                "method_overrides: {vera: {fault: oom@train:1}}\n"
            )
        },
    )
    result = snakemake("failing", root=root)
    assert result.returncode == 0, result.stderr[-3000:]
    out = root / "outputs" / "failing"
    failed = json.loads((out / "runs" / "arc-vera-r4-s0" / "train.json").read_text())
    assert failed["status"] == "failed" and "out of memory at optimizer step 1" in failed["error"]["message"]
    assert failed["error"]["phase"] == "train"
    downstream = json.loads((out / "runs" / "arc-vera-r4-s0" / "eval-arc.json").read_text())
    assert downstream["status"] == "failed" and "training run arc-vera-r4-s0 failed" in downstream["error"]["message"]
    assert json.loads((out / "runs" / "arc-lora-r4-s0" / "eval-arc.json").read_text())["status"] == "ok"
    table = (out / "report" / "table1.csv").read_text()
    assert "failed" in table  # the report shows the failed run as failed

    # Asked to, the next start retries the failed run (still failing: same record, new attempt).
    again = snakemake("failing", "--config", "retry_failed=1", root=root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        "rule train:" in again.stdout + again.stderr and "wildcards: run=arc-vera-r4-s0" in again.stdout + again.stderr
    )
    assert json.loads((out / "runs" / "arc-vera-r4-s0" / "train.json").read_text())["status"] == "failed"
    nothing = snakemake("failing", root=root)  # without asking, a failed record is a finished job
    assert "rule train:" not in nothing.stdout + nothing.stderr


@pytest.mark.slow
def test_smoke_report_pages_pass_the_visual_check(smoke_study, tmp_path):
    """The smoke study's report, checked as a reader would look at it: findings on page 1, page
    numbers, no half-empty page but a part's last, no table wider than the page, every figure
    captioned; its page images are kept for a person to look at."""
    import pypdfium2 as pdfium

    from peftlab.report.pages import check_report

    root, run = smoke_study
    assert run.returncode == 0, run.stderr[-3000:]
    report = root / "outputs" / "smoke" / "report"
    pdf = pdfium.PdfDocument(str(report / "report.pdf"))
    try:
        texts = [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    finally:
        pdf.close()
    kept = sorted((report / "pages").glob("page-*.png"))
    assert len(kept) == len(texts) and (report / "pages" / "layout.json").is_file()
    first = " ".join(texts[0].split())
    assert "Findings" in first and all(f"Q{i}" in first for i in range(1, 10)) and "Caveats" in first
    assert all(f"page {i + 1} of {len(texts)}" in " ".join(t.split()) for i, t in enumerate(texts))
    checked = check_report(report / "report.html", report / "report.pdf", tmp_path / "pages")
    assert checked["half_empty"] == [], checked["fill"]
    assert checked["wide_tables"] == []
    assert checked["figures"]["problems"] == [] and checked["figures"]["figures"] >= 4
    html = (report / "report.html").read_text()
    assert '<nav class="toc" id="toc"><ul>' in html and html.count("<details") == 9


def test_local_runs_evaluate_each_model_in_one_job(tmp_path, capfd):
    """Through `peftlab study` with a local profile: one evaluation job per model (one load for all
    its tasks); a cluster profile keeps one job per (model, task)."""
    from peftlab.study.plan import run_study

    assert run_study("smoke", directory=str(tmp_path), snakemake_args=["--dry-run", "--forceall"]) == 0
    out = capfd.readouterr()
    text = out.out + out.err
    assert "evaluate_model" in text and "rule evaluate:" not in text
