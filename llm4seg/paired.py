"""Paired statistics of a comparison, and the names of its cells (shared by compare and its report).

Kept apart from compare.py and compare_report.py so that the report needs nothing of the runner
(the two imported each other before).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Two-sided 95 % Student t quantiles by degrees of freedom (1..30); beyond, the normal 1.96.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def cell_name(variant: str, split: str | None, seed: int) -> str:
    """The run folder name of one cell: VARIANT-SPLIT-sSEED."""
    return f"{variant}-{split or 'all'}-s{seed}"


def t975(df: int) -> float:
    """The two-sided 95 % Student t quantile for `df` degrees of freedom."""
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


def paired(results: list[dict[str, Any]], baseline: str, variant: str, metric: str = "iou") -> dict[str, Any]:
    """Paired differences variant - baseline over the (split, seed) cells both have, with a 95 % t interval."""
    by = {(r["variant"], r["split"], r["seed"]): r["metrics"][metric] for r in results}
    keys = sorted({(s, seed) for v, s, seed in by if v == variant} & {(s, seed) for v, s, seed in by if v == baseline})
    d = np.array([by[(variant, *k)] - by[(baseline, *k)] for k in keys], dtype=float)
    if len(d) == 0:
        return {"n": 0}
    mean = float(d.mean())
    if len(d) < 2:
        return {"n": 1, "mean": mean, "pairs": [list(k) for k in keys]}
    sd = float(d.std(ddof=1))
    half = t975(len(d) - 1) * sd / math.sqrt(len(d))
    return {"n": len(d), "mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "pairs": [list(k) for k in keys]}
