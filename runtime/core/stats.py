"""Latency statistics and timers, in milliseconds (one place: export, bench and benchmarks use them)."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np


def percentiles_ms(samples_ms) -> dict[str, float]:
    """Latency samples (ms) -> {'n', 'p50', 'p90', 'p99', 'mean', 'max'}; {'n': 0} when empty."""
    a = np.asarray(list(samples_ms), dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max())}


def median_ms(fn: Callable[[], object], warmup: int = 1, iterations: int = 5,
              sync: Callable[[], object] = lambda: None) -> float:
    """Median wall time of `fn()` in ms after `warmup` untimed calls; `sync` waits for the device
    (torch.cuda.synchronize on a GPU) so queued work is counted."""
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

    Args:
        gap_s: idle time before each call, letting the previous framework's spinning threads go quiet.

    Returns:
        name -> the `iterations` timed samples in ms (warm-up rounds dropped).
    """
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
