"""Latency statistics in milliseconds."""

from __future__ import annotations

import numpy as np


def percentiles_ms(samples_ms) -> dict[str, float]:
    """Latency samples (ms) -> {'n', 'p50', 'p90', 'p99', 'mean', 'max'}; {'n': 0} when empty."""
    a = np.asarray(list(samples_ms), dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max())}
