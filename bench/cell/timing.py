"""Wall-clock and peak memory of one gradient estimate, taken as a training step takes it.

Timing: a few untimed warm-up calls, then repeated timed calls (``time.perf_counter``,
CUDA synchronised before each clock read) until a time budget or a repetition cap is
reached; the median and interquartile range are reported.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` during one call, above what was
allocated before it. On CPU, the peak of live tensor bytes allocated during one call,
from the allocation events of ``torch.profiler`` (``profile_memory=True``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile


@dataclass(frozen=True)
class Timing:
    median_s: float
    iqr_s: float
    n: int


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    step: Callable[[], object],
    device: torch.device,
    warmup: int = 3,
    min_reps: int = 5,
    max_reps: int = 50,
    budget_s: float = 0.1,
) -> Timing:
    """Median and IQR of ``step``'s wall-clock over repeated calls after ``warmup`` calls:
    at least ``min_reps``, then more until ``budget_s`` seconds or ``max_reps`` calls. The
    default (0.1 s or 50 calls, at least 5) was 0.5 s or 200 calls until ``bench paper``'s
    many cheap cells spent most of their time here (docs/sweeps.md); a median of 50 calls
    of a millisecond step is as resolved as one of 200 for a figure on a log scale."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times: list[float] = []
    spent = 0.0
    while len(times) < min_reps or (len(times) < max_reps and spent < budget_s):
        start = time.perf_counter()
        step()
        synchronize(device)
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    return Timing(median_s=float(q50), iqr_s=float(q75 - q25), n=len(times))


def peak_memory_bytes(step: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated by one call of ``step`` above what was live before it."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    return _cpu_peak(prof)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: the profiler's C++ side logs every start and stop there."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def allocation_events(prof: profile) -> list[int]:
    """The bytes of every tensor allocation (positive) and free (negative) that ``prof``
    recorded, in the order they happened."""
    allocations: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        typed = getattr(node, "typed", None)
        if typed is not None and typed[0].name == "Allocation":
            allocations.append((node.start_time_ns, typed[1].alloc_size))
        stack.extend(node.children)
    return [size for _, size in sorted(allocations)]


def live_bytes(step: Callable[[], object], device: torch.device) -> list[int]:
    """The live tensor bytes after each allocation or free during one call of ``step``,
    above what was live before it (``torch.profiler`` with ``profile_memory``)."""
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with _quiet_stderr(), profile(activities=activities, profile_memory=True) as prof:
        step()
    live, out = 0, []
    for size in allocation_events(prof):
        live += size
        out.append(live)
    return out


def _cpu_peak(prof: profile) -> int:
    live = peak = 0
    for size in allocation_events(prof):
        live += size
        peak = max(peak, live)
    return int(peak)
