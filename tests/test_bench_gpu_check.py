"""bench/gpu-check.sh where no GPU is: its syntax, its requirement list, its refusals, and its CPU
rehearsal (GPU_CHECK_REHEARSAL=1 with a stand-in nvidia-smi), which runs every step's command
line end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from peftlab.core.paths import repo_root

SCRIPT = repo_root() / "bench" / "gpu-check.sh"


# A stand-in nvidia-smi that lists one GPU: the invocations bench/gpu-check.sh makes, and a
# refusal of any other (a new invocation in the script shows up here first).
FAKE_NVIDIA_SMI = """#!/bin/sh
case "$*" in
  -L) echo "GPU 0: CPU rehearsal stand-in (UUID: GPU-00000000-0000-0000-0000-000000000000)" ;;
  "--query-gpu=name,memory.total,driver_version --format=csv,noheader") echo "CPU rehearsal stand-in, 0 MiB, 0.0" ;;
  "") echo "nvidia-smi stand-in for the CPU rehearsal: no GPU here" ;;
  *) echo "nvidia-smi stand-in: unexpected arguments: $*" >&2; exit 9 ;;
esac
"""


def _run(*args, script: Path = SCRIPT, timeout: float = 120, **env):
    return subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, "GPU_CHECK_REHEARSAL": "0", **env},
    )


def _rehearse(tmp_path: Path, script: Path = SCRIPT):
    """The script's CPU rehearsal into tmp_path/out: (finished process, {step: exit status})."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    (tmp_path / "tmp").mkdir()
    result = _run(
        str(tmp_path / "out"),
        script=script,
        timeout=2400,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        TMPDIR=str(tmp_path / "tmp"),
        GPU_CHECK_REHEARSAL="1",
        # a busy CPU: the GPU's limits (240 s, 210 s) are not the rehearsal's
        SCALE_TIMEOUT="900",
        STUDY_TIMEOUT="1200",
    )
    status_file = tmp_path / "out" / "status.txt"
    lines = status_file.read_text().splitlines() if status_file.is_file() else []
    return result, {line.split()[0]: int(line.split()[1]) for line in lines}


def _project_with_script(where: Path, script_text: str) -> Path:
    """A project root sharing this checkout's files, whose bench/gpu-check.sh is `script_text`
    (the script finds the project from its own location)."""
    root = repo_root()
    for name in ("data", "notebooks", "report", "workflow", "profiles", "lib", "params", "pyproject.toml"):
        (where / name).symlink_to(root / name)
    (where / "bench").mkdir()
    for path in (root / "bench").iterdir():
        if path.name != "gpu-check.sh" and path.name != "__pycache__":
            (where / "bench" / path.name).symlink_to(path)
    script = where / "bench" / "gpu-check.sh"
    script.write_text(script_text)
    return script


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


def test_rehearsal_flag_takes_0_or_1(tmp_path):
    result = _run(str(tmp_path / "out"), GPU_CHECK_REHEARSAL="yes")
    assert result.returncode == 64 and "GPU_CHECK_REHEARSAL" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_step_end_to_end(tmp_path):
    """Every step's command line of the GPU check, on the CPU with tiny sizes: each exits 0 and
    writes what the GPU run writes."""
    result, status = _rehearse(tmp_path)
    out = tmp_path / "out"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert status == {"scale": 0, "smoke": 0, "engines": 0}
    assert "CPU rehearsal" in result.stdout
    for name in ("nvidia-smi.txt", "gpu.json", "versions.json", "scale.json", "summary.json", "smoke-summary.json"):
        assert (out / name).is_file(), name

    assert json.loads((out / "gpu.json").read_text()) == [
        {"name": "CPU rehearsal stand-in", "memory_total": "0 MiB", "driver_version": "0.0"}
    ]
    versions = json.loads((out / "versions.json").read_text())
    assert versions["rehearsal"] is True and versions["gpu_count"] == 0 and "stand-in" in versions["gpu"]
    assert {"torch", "transformers", "peft"} <= set(versions)

    scale = json.loads((out / "scale.json").read_text())
    assert (scale["device"], scale["base_model"], scale["sizes"]["dtype"]) == ("cpu", "tiny", "float32")
    assert sorted(run["method"] for run in scale["runs"].values()) == ["dora", "full", "lora", "vera"]
    assert {name: run["status"] for name, run in scale["runs"].items()} == dict.fromkeys(scale["runs"], "ok")
    assert "scale" in json.loads((out / "summary.json").read_text())

    smoke = json.loads((out / "smoke-summary.json").read_text())
    assert smoke["study"] == "smoke" and smoke["records"] > 0 and not smoke["missing"]
    assert smoke["status"] == {"ok": smoke["records"], "failed": 0}
    assert [run["status"] for run in smoke["runs"]] == ["ok"] * smoke["records"]
    assert {run["device"] for run in smoke["runs"]} == {"cpu"}
    engines = json.loads((out / "engines.json").read_text())
    assert set(engines["engines"]) == {"peftlab", "transformers", "auto"} and engines["device"] == "cpu"
    assert {e["engine"]["name"] for e in engines["engines"].values()} == {"peftlab", "transformers"}
    assert engines["identical_reply_share"] == 1.0 and engines["auto_chooses"] == "peftlab"
    assert not list((tmp_path / "tmp").glob("gpu-check.*")), "the fresh project folder is left behind"


@pytest.mark.slow
def test_cpu_rehearsal_catches_a_refused_profile(tmp_path):
    """The script as it was before profiles/local: its rehearsal fails the smoke step and names it."""
    text = SCRIPT.read_text()
    command = '"$PY" -m peftlab.study run smoke --profile profiles/'
    assert text.count(command + "local") == 1
    (tmp_path / "project").mkdir()
    script = _project_with_script(tmp_path / "project", text.replace(command + "local", command + "default"))

    result, status = _rehearse(tmp_path, script)
    assert result.returncode == 1
    assert status["scale"] == 0 and status["smoke"] != 0
    assert "step smoke failed" in result.stderr
    assert "profiles/default" in (tmp_path / "out" / "smoke.log").read_text()
