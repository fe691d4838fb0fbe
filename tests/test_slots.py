"""Local parallel jobs: one slot per GPU, checked on CPU with a fake device count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peftlab.core.errors import ConfigError
from peftlab.core.paths import repo_root
from peftlab.study.plan import run_study
from peftlab.study.slots import SlotError, detect_gpus, parse_gpus, slot_env, slot_threads

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

# A job that records the device and threads it was given, and how long it ran.
PROBE = (
    "import json, os, sys, time; t0 = time.time(); time.sleep(float(sys.argv[2])); "
    "json.dump({'device': os.environ.get('CUDA_VISIBLE_DEVICES'), 'threads': int(os.environ['OMP_NUM_THREADS']), "
    "'mkl': int(os.environ['MKL_NUM_THREADS']), 'start': t0, 'end': time.time()}, open(sys.argv[1], 'w'))"
)


@pytest.mark.parametrize("slots,cores", [(1, 2), (2, 2), (3, 7), (4, 16), (8, 12)])
def test_thread_shares_add_up_to_the_cores(slots, cores):
    shares = [slot_threads(k, slots, cores) for k in range(slots)]
    assert sum(shares) == cores and min(shares) >= 1 and max(shares) - min(shares) <= 1


def test_more_slots_than_cores_still_gives_every_job_a_thread():
    assert [slot_threads(k, 4, 2) for k in range(4)] == [1, 1, 1, 1]


def test_one_slot_keeps_the_devices_and_gets_every_core():
    env = slot_env(0, 1, 16, env={"CUDA_VISIBLE_DEVICES": "2,3"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["OMP_NUM_THREADS"] == "16"
    assert "CUDA_VISIBLE_DEVICES" not in slot_env(0, 1, 2, env={})


def test_slots_map_onto_the_visible_devices():
    visible = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    assert [slot_env(k, 4, 8, env=visible)["CUDA_VISIBLE_DEVICES"] for k in range(4)] == ["4", "5", "6", "7"]
    assert [slot_env(k, 2, 8, env={})["CUDA_VISIBLE_DEVICES"] for k in range(2)] == ["0", "1"]
    with pytest.raises(SlotError, match="slot 2 has no GPU"):
        slot_env(2, 3, 8, env={"CUDA_VISIBLE_DEVICES": "0,1"})


def test_gpu_count_is_detected_and_checked(tmp_path):
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "0,1,2", "PATH": ""}) == 3
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "", "PATH": ""}) == 0
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "-1", "PATH": ""}) == 0
    assert detect_gpus({"PATH": str(tmp_path)}) == 0  # no nvidia-smi: a CPU-only machine
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\nfor i in 0 1 2 3; do echo "GPU $i: NVIDIA H100 (UUID: GPU-$i)"; done\n')
    fake.chmod(0o755)
    assert detect_gpus({"PATH": str(tmp_path)}) == 4
    assert parse_gpus(None, {"PATH": str(tmp_path)}) == 4
    assert parse_gpus("2", {"PATH": str(tmp_path)}) == 2
    assert parse_gpus(None, {"PATH": ""}) == 1  # CPU only: one job at a time
    with pytest.raises(SlotError, match="shows only 4 GPU"):
        parse_gpus("5", {"PATH": str(tmp_path)})
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(SlotError, match="allowed: a whole number >= 1"):
            parse_gpus(bad, {"PATH": ""})


def _start(tmp_path: Path, name: str, slots: int, cores: int, seconds: float) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "peftlab.study.slots",
            "--slots",
            str(slots),
            "--cores",
            str(cores),
            "--lock-dir",
            str(tmp_path / "locks"),
            "--",
            sys.executable,
            "-c",
            PROBE,
            str(tmp_path / f"{name}.json"),
            str(seconds),
        ],
        env=env,
        stderr=subprocess.PIPE,
    )


def test_concurrent_jobs_get_disjoint_devices_and_their_threads_add_up(tmp_path):
    """Four fake GPUs and 10 cores: four jobs run together, each on its own device, with
    3+3+2+2 threads; a fifth job waits until one of them has finished and takes its GPU."""
    procs = [_start(tmp_path, f"job{i}", 4, 10, 4.0) for i in range(4)]
    held = [proc.stderr.readline().decode() for proc in procs]  # printed once the slot is held
    assert all(line.startswith("slot ") for line in held), held
    fifth = _start(tmp_path, "job4", 4, 10, 0.1)
    for proc in [*procs, fifth]:
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    four = [json.loads((tmp_path / f"job{i}.json").read_text()) for i in range(4)]
    late = json.loads((tmp_path / "job4.json").read_text())
    assert max(j["start"] for j in four) < min(j["end"] for j in four)  # all four ran at once
    assert sorted(j["device"] for j in four) == ["0", "1", "2", "3"]
    assert sorted(j["threads"] for j in four) == [2, 2, 3, 3] and all(j["mkl"] == j["threads"] for j in four)
    assert late["start"] > min(j["end"] for j in four)  # never a fifth job on the four GPUs
    freed = [j["device"] for j in four if j["end"] < late["start"]]
    assert late["device"] in freed


def test_a_killed_job_frees_its_slot(tmp_path):
    first = _start(tmp_path, "killed", 1, 2, 60)
    time.sleep(1.5)
    first.kill()
    first.wait()
    second = _start(tmp_path, "next", 1, 2, 0.1)
    assert second.wait(timeout=60) == 0
    assert json.loads((tmp_path / "next.json").read_text())["threads"] == 2


@pytest.mark.parametrize("slots,threads", [(1, "4"), (2, "2")])
def test_the_local_workflow_runs_one_job_per_slot(tmp_path, slots, threads):
    """The commands the workflow would run with 1 or 2 slots on 4 cores: each job through the
    slot wrapper, with the cores divided in Snakemake's accounting (so `slots` jobs fit at once)."""
    out = subprocess.run(
        [
            SNAKEMAKE,
            "-s",
            str(repo_root() / "workflow" / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--profile",
            str(repo_root() / "profiles" / "local"),
            "--cores",
            "4",
            "--resources",
            f"accelerator={slots}",
            "--config",
            "study=smoke",
            "-n",
            "-p",
            "--forceall",
        ],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        env=dict(os.environ, PEFTLAB_ROOT=str(repo_root())),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert (
        text.count(f"-m peftlab.study.slots --slots {slots} ") == 8 and "--cores 4 --" in text
    )  # 2 train + 6 evaluate
    counts = [line.split(":")[1].strip() for line in text.splitlines() if line.strip().startswith("threads:")]
    assert counts == [threads] * 8, counts


def test_gpus_is_for_local_profiles_and_a_missing_profile_is_named(tmp_path):
    with pytest.raises(ConfigError, match="applies to local profiles only"):
        run_study("smoke", profile="profiles/slurm", gpus="2", directory=str(tmp_path))
    with pytest.raises(ConfigError, match="profile 'profiles/default' does not exist.*profiles/local"):
        run_study("smoke", profile="profiles/default", directory=str(tmp_path))
