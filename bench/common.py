"""What the benchmark's parts share: the output folder, the matmul peak, comparisons."""

from __future__ import annotations

import math
import statistics
import time

import torch

from peftlab.core.paths import repo_root

OUT = repo_root() / "outputs" / "bench"


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 10) -> dict:
    """Best sustained FLOP/s of a square matmul, per dtype, on this device and thread count."""
    result = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        torch.mm(a, b)  # warm-up
        best = math.inf
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            torch.mm(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
        result[str(dtype).replace("torch.", "")] = 2 * size**3 / best
    return {"size": size, "threads": torch.get_num_threads(), "flops": result}


def alternating(names, round_index: int) -> list:
    """The order of round `round_index` (0-based) of interleaved repeats: `names` as given,
    reversed every other round, so that no variant always runs right after the same one."""
    names = list(names)
    return names if round_index % 2 == 0 else names[::-1]


def spread(values) -> dict:
    """Median, min and max of repeated measurements (those not None), and how many there are."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(present), "min": min(present), "max": max(present), "n": len(present)}


def rel_diff(value: float | None, reference: float | None) -> float | None:
    """|value - reference| / |reference|; None when either is missing or the reference is 0."""
    if value is None or reference is None or reference == 0:
        return None
    return abs(value - reference) / abs(reference)


def share_equal(pairs) -> float | None:
    """The share of pairs whose two sides are equal (None for no pairs)."""
    pairs = list(pairs)
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def peak_memory_gb(memory: dict | None) -> float | None:
    """The headline figure of a record's `memory` entry: peak RSS on a CPU, the CUDA
    allocator's peak reserved on a GPU (the entry's label says which)."""
    if not memory:
        return None
    return memory.get("peak_rss_gb", memory.get("peak_reserved_gb"))
