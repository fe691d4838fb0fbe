"""Only the profile given is in force: nothing is added on top of a user's --profile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from peftlab.core.paths import repo_root

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


@pytest.mark.parametrize("profile", ["slurm", "slurm-local", "local"])
def test_the_dry_run_uses_the_given_profile_only(tmp_path, profile):
    out = subprocess.run(
        [SNAKEMAKE, "-s", "workflow/Snakefile", "--profile", f"profiles/{profile}", "-n", "--config", "study=smoke"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        env=dict(os.environ, PEFTLAB_ROOT=str(repo_root())),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    using = [line for line in out.stderr.splitlines() if line.startswith("Using ")]
    assert using == [f"Using profile profiles/{profile} for setting default command line arguments."], using


def test_no_profile_is_picked_up_as_the_workflow_specific_one():
    """Snakemake adds profiles/default (next to the working directory or the Snakefile) to every
    run as its "workflow specific profile"; the local profile lives elsewhere."""
    root = repo_root()
    assert not any(
        p.exists()
        for p in (root / "default", root / "profiles" / "default", root / "workflow" / "profiles" / "default")
    )
    assert (root / "profiles" / "local" / "config.yaml").is_file()


def test_the_slurm_profiles_leave_the_local_one_job_limit_out():
    import yaml

    for name in ("slurm", "slurm-local"):
        settings = yaml.safe_load((repo_root() / "profiles" / name / "config.yaml").read_text())
        assert "accelerator" not in (settings.get("resources") or {}), name
