"""Timing helpers shared by the benchmark scripts (medians, and interleaved rounds for fair ratios)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(fn: Callable[[], object], warmup: int, iterations: int,
              sync: Callable[[], object] = lambda: None) -> float:
    """Median wall time of fn(); `sync` waits for the device (torch.cuda.synchronize on a GPU)."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def interleaved_ms(fns: dict[str, Callable[[], object]], warmup: int, iterations: int,
                   gap_s: float = 0.0) -> dict[str, list[float]]:
    """Each callable timed once per round, in turns, so a drifting machine speed hits all alike.
    `gap_s` idles before each call, letting the previous framework's spinning threads go quiet."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + iterations):
        for name, fn in fns.items():
            if gap_s:
                time.sleep(gap_s)
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1000)
    return times
