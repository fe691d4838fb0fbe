"""Peak memory of one phase (training, evaluation), labelled by what was measured.

CUDA: the allocator's peak reserved ("resident") and peak allocated, reset at the start
of the phase, plus device-level used memory from NVML. Each phase starts by handing the
allocator's cached free blocks back to the device (`torch.cuda.empty_cache`), so a phase's
peak reserved figure does not carry blocks left over by an earlier phase (it does not
depend on the order in which tasks or phases ran). CPU: the process's peak resident set
size over the phase (Linux resets the high-water mark through /proc/self/clear_refs; where
that is not possible the figure is the process lifetime's peak and says so).

A phase may carry a `label` (e.g. "batch-1 serving peak"): it leads the figure's label,
so a record says which quantity was measured, not only how.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

GB = 1024**3


def _nvml_used_gb(index: int) -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            return pynvml.nvmlDeviceGetMemoryInfo(handle).used / GB
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML missing or unsupported: the allocator figures still stand
        return None


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_gb() -> float:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GB
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / GB


class PhaseMemory:
    """with PhaseMemory(device, label=...) as mem: ...; mem.result() -> dict of labelled peaks."""

    def __init__(self, device: torch.device | str, *, label: str | None = None):
        self.device = torch.device(device)
        self.phase = label
        self._figures: dict = {}
        self._reset_ok = False
        self._nvml_peak: float | None = None  # also for snapshot() outside a phase (an error's figures)

    def __enter__(self) -> PhaseMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()  # cached blocks of an earlier phase do not count in this one
            torch.cuda.reset_peak_memory_stats(self.device)
            self._nvml_peak = _nvml_used_gb(self.device.index or 0)
        else:
            self._reset_ok = _reset_rss_peak()
        return self

    def sample(self) -> None:
        """Call during the phase to catch the NVML device-level peak (it has no peak counter)."""
        if self.device.type == "cuda":
            used = _nvml_used_gb(self.device.index or 0)
            if used is not None:
                self._nvml_peak = max(self._nvml_peak or 0.0, used)

    def __exit__(self, *exc) -> None:
        self._figures = self.snapshot()

    def snapshot(self) -> dict:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.sample()
            return {
                "device": "cuda",
                "peak_reserved_gb": torch.cuda.max_memory_reserved(self.device) / GB,
                "peak_allocated_gb": torch.cuda.max_memory_allocated(self.device) / GB,
                "nvml_used_gb": self._nvml_peak,
                "label": self._label("CUDA allocator peak reserved / allocated over the phase; NVML device used"),
            }
        return {
            "device": "cpu",
            "peak_rss_gb": _rss_peak_gb(),
            "label": self._label(
                "process peak RSS over the phase" if self._reset_ok else "process peak RSS since start"
            ),
        }

    def _label(self, how: str) -> str:
        return f"{self.phase}: {how}" if self.phase else how

    def result(self) -> dict:
        return dict(self._figures) if self._figures else self.snapshot()
