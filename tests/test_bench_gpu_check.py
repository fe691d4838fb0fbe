"""bench/gpu-check.sh where no GPU is: its syntax, its requirement list, and its refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from peftlab.core.paths import repo_root

SCRIPT = repo_root() / "bench" / "gpu-check.sh"


def _run(*args, **env):
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable, **env},
    )


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_requirements_list_what_a_gpu_machine_may_lack():
    result = _run("--requirements")
    assert result.returncode == 0, result.stderr
    names = {line.split(">")[0].split("[")[0].split("=")[0].split("<")[0] for line in result.stdout.split()}
    assert {"transformers", "peft", "trl", "datasets", "papermill", "snakemake", "ipykernel"} <= names
    assert not names & {"torch", "jupyterlab", "gguf"}


def test_refuses_without_nvidia_smi(tmp_path):
    result = _run(str(tmp_path / "out"), NVIDIA_SMI=str(tmp_path / "no-such-nvidia-smi"))
    assert result.returncode == 2
    assert "no NVIDIA GPU visible" in result.stderr
    assert not (tmp_path / "out").exists()


def test_refuses_when_nvidia_smi_lists_no_gpu(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    fake.chmod(0o755)
    result = _run(str(tmp_path / "out"), NVIDIA_SMI=str(fake))
    assert result.returncode == 2 and "no NVIDIA GPU visible" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="PyTorch sees a GPU here")
def test_refuses_when_pytorch_has_no_cuda(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
    fake.chmod(0o755)
    result = _run(str(tmp_path / "out"), NVIDIA_SMI=str(fake))
    assert result.returncode == 2
    assert "torch.cuda.is_available() is False" in result.stderr


def test_usage_errors():
    assert _run().returncode == 64
    assert _run("--no-such-option").returncode == 64
