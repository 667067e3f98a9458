"""Wall-clock timing on CPU or GPU for the benchmark scripts.

CUDA kernels run asynchronously: a host clock read right after a launch measures the launch, not the
work. :func:`sync` waits for the device, and :func:`timed` synchronises before and after each run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def sync(device: str | torch.device) -> None:
    """Wait for the queued work of ``device`` (a no-op off CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: str | torch.device, repeats: int, warmup: bool = True) -> float:
    """Median wall time in seconds of ``repeats`` calls of ``fn``, after one untimed call when ``warmup``
    (allocator, kernel selection, caches)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
