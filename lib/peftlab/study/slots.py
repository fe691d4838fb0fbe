"""Local parallel jobs: one slot per GPU, each job pinned to its own device and given its share of the cores.

The local profile lets Snakemake run as many accelerator jobs at once as the `accelerator`
resource allows (`peftlab.study.plan run` sets it to the number of GPUs). Every train and
evaluate job starts through this module, which takes a free slot k (an exclusive lock
file; the kernel releases it when the job dies), then runs the job with

  CUDA_VISIBLE_DEVICES = the k-th visible GPU    (never two jobs on one device)
  OMP_NUM_THREADS = MKL_NUM_THREADS = its share of the cores (the shares add up to the cores)

With one slot (a CPU-only machine, or one GPU) a job gets every core and the device
settings are left as they are. Inside a SLURM job (`--slots 0`) SLURM has already chosen
the devices and the CPUs: only the thread count is set.

  python -m peftlab.study.slots --slots 2 --cores 16 --lock-dir .snakemake/peftlab-slots -- papermill ...
  python -m peftlab.study.slots --detect        # the number of GPUs this machine shows
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from peftlab.core.errors import PeftlabError


class SlotError(PeftlabError, ValueError):
    """A slot count, core count or GPU setting that cannot work."""


def visible_devices(env: dict | None = None) -> list[str] | None:
    """The devices CUDA_VISIBLE_DEVICES names (None when it is unset: every device is visible)."""
    env = os.environ if env is None else env
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    devices = [d.strip() for d in value.split(",") if d.strip()]
    # CUDA stops at the first invalid entry; "-1" or "" hides every device
    if devices and devices[0].startswith("-"):
        return []
    return devices


def detect_gpus(env: dict | None = None) -> int:
    """The number of GPUs a job may use: CUDA_VISIBLE_DEVICES when set, else the GPUs
    `nvidia-smi -L` lists, else 0. PyTorch is not imported (it takes seconds)."""
    devices = visible_devices(env)
    if devices is not None:
        return len(devices)
    smi = shutil.which("nvidia-smi", path=(os.environ if env is None else env).get("PATH"))
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def parse_gpus(value: str | int | None, env: dict | None = None) -> int:
    """The number of local slots: `value` (GPUS=…) when given, else the detected GPU count;
    at least 1 (a CPU-only machine runs one job at a time)."""
    if value is None or str(value).strip() in ("", "auto"):
        return max(1, detect_gpus(env))
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise SlotError(
            f"GPUS={value!r} is not allowed; allowed: a whole number >= 1 (jobs at once, one per GPU), "
            "or 'auto' / unset to use every GPU detected"
        )
    gpus = int(text)
    seen = detect_gpus(env)
    if seen and gpus > seen:
        raise SlotError(
            f"GPUS={gpus} but this machine shows only {seen} GPU(s); allowed: 1 to {seen} "
            "(two jobs are never put on one GPU)"
        )
    return gpus


def slot_threads(slot: int, slots: int, cores: int) -> int:
    """Slot `slot`'s share of `cores`: the shares of slots 0..slots-1 add up to `cores`
    (each at least 1)."""
    if slots < 1 or cores < 1:
        raise SlotError(f"slots={slots}, cores={cores}: both must be >= 1")
    if not 0 <= slot < slots:
        raise SlotError(f"slot {slot} does not exist; allowed: 0 to {slots - 1}")
    if cores < slots:
        return 1
    return cores // slots + (1 if slot < cores % slots else 0)


def slot_env(slot: int, slots: int, cores: int, env: dict | None = None) -> dict:
    """The environment of the job in slot `slot`: its device (with more than one slot) and threads."""
    env = dict(os.environ if env is None else env)
    threads = slot_threads(slot, slots, cores)
    if slots > 1:
        devices = visible_devices(env)
        if devices is not None:
            if slot >= len(devices):
                raise SlotError(
                    f"slot {slot} has no GPU: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']!r} "
                    f"names {len(devices)}; allowed slots: at most the number of GPUs"
                )
            env["CUDA_VISIBLE_DEVICES"] = devices[slot]
        else:
            env["CUDA_VISIBLE_DEVICES"] = str(slot)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PEFTLAB_SLOT"] = str(slot)
    return env


class Slot:
    """An exclusive hold on one of `slots` lock files in `lock_dir`; waits while all are taken."""

    def __init__(self, lock_dir: str | os.PathLike, slots: int, poll: float = 0.2):
        if slots < 1:
            raise SlotError(f"slots={slots}: must be >= 1")
        self.lock_dir, self.slots, self.poll = Path(lock_dir), slots, poll
        self.index: int | None = None
        self._fd: int | None = None

    def __enter__(self) -> Slot:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        while True:
            for k in range(self.slots):
                fd = os.open(self.lock_dir / f"slot-{k}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.index, self._fd = k, fd
                return self
            time.sleep(self.poll)  # every slot busy (another run in this directory): wait

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peftlab.study.slots", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--slots",
        type=int,
        default=1,
        help="jobs at once on this machine (one per GPU); 0: inside a SLURM job, no slot",
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores shared by the slots")
    parser.add_argument("--lock-dir", default=".snakemake/peftlab-slots")
    parser.add_argument("--detect", action="store_true", help="print the number of GPUs and exit")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the job's command")
    args = parser.parse_args(argv)
    if args.detect:
        print(detect_gpus())
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    if args.slots == 0:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.cores), MKL_NUM_THREADS=str(args.cores))
        return subprocess.run(command, env=env).returncode
    with Slot(args.lock_dir, args.slots) as slot:
        env = slot_env(slot.index, args.slots, args.cores)
        print(
            f"slot {slot.index} of {args.slots}: CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '(all)')}, "
            f"{env['OMP_NUM_THREADS']} threads",
            file=sys.stderr,
        )
        return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
