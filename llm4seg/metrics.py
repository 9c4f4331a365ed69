"""Per-image segmentation metrics at a threshold, numpy only (the runtime uses them too).

Empty-mask rule, applied everywhere: a ratio whose denominator is 0 scores 1 when the
prediction and the mask are both empty, else 0. HD95 is 0 when both are empty and the image
diagonal (the largest distance possible) when exactly one is empty, so means stay finite.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

METRIC_NAMES = ("iou", "dice", "sensitivity", "precision", "f1", "specificity", "accuracy", "hd95")


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: the mask minus its 4-connected erosion (MedPy's convention)."""
    eroded = cv2.erode(mask.astype(np.uint8), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8),
                       borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & ~eroded.astype(bool)


def _distances_to(surface_from: np.ndarray, surface_to: np.ndarray) -> np.ndarray:
    # Exact Euclidean distance from every pixel to the nearest pixel of surface_to.
    field = cv2.distanceTransform((~surface_to).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return field[surface_from]


def hd95(pred: np.ndarray, target: np.ndarray) -> float:
    """95th percentile of the symmetric surface distances, in pixels."""
    if not pred.any() and not target.any():
        return 0.0
    if not pred.any() or not target.any():
        return float(math.hypot(*pred.shape))
    sp, st = _surface(pred), _surface(target)
    both = np.concatenate([_distances_to(sp, st), _distances_to(st, sp)])
    return float(np.percentile(both, 95))


def hd95_mm(pred: np.ndarray, target: np.ndarray, spacing_mm: tuple[float, float]) -> float:
    """95th percentile of the symmetric surface distances in mm, on a grid of `spacing_mm` (row,
    column) per pixel; the empty-mask rule of `hd95` with the diagonal in mm. Non-square pixels are
    measured exactly (each surface point against every point of the other surface)."""
    dy, dx = (float(v) for v in spacing_mm)
    if not pred.any() and not target.any():
        return 0.0
    if not pred.any() or not target.any():
        return float(math.hypot(pred.shape[0] * dy, pred.shape[1] * dx))
    if abs(dy - dx) <= 1e-9 * max(dy, dx):
        return hd95(pred, target) * dy
    sp = np.argwhere(_surface(pred)) * (dy, dx)
    st = np.argwhere(_surface(target)) * (dy, dx)
    both = np.concatenate([_nearest_mm(sp, st), _nearest_mm(st, sp)])
    return float(np.percentile(both, 95))


def _nearest_mm(points: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Distance from each point to its nearest in `others` (both (N, 2) in mm), in chunks of ~64 MB."""
    step = max(1, (1 << 23) // max(1, len(others)))
    return np.concatenate([np.sqrt(((points[i:i + step, None, :] - others[None]) ** 2).sum(-1)).min(1)
                           for i in range(0, len(points), step)])


def mask_dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two masks (anything > 0 or True is foreground); None when both are empty.

    The project's one Dice: `image_metrics` scores None as 1 (the empty-mask rule); agreement
    between frames or artifacts leaves the pair out (two empty masks agreeing says nothing).
    """
    a, b = np.asarray(a).astype(bool, copy=False), np.asarray(b).astype(bool, copy=False)
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return None
    return 2.0 * float(np.count_nonzero(a & b)) / total


def image_metrics(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """prob: (H, W) probabilities (or a bool mask); target: (H, W) bool."""
    pred = prob > threshold if prob.dtype != bool else prob
    target = target.astype(bool)
    tp = float(np.count_nonzero(pred & target))
    fp = float(np.count_nonzero(pred & ~target))
    fn = float(np.count_nonzero(~pred & target))
    tn = float(pred.size) - tp - fp - fn
    empty = tp + fp + fn == 0
    precision = _ratio(tp, tp + fp, empty)
    sensitivity = _ratio(tp, tp + fn, empty)
    return {
        "iou": _ratio(tp, tp + fp + fn, empty),
        "dice": 1.0 if empty else mask_dice(pred, target),
        "sensitivity": sensitivity,
        "precision": precision,
        "f1": _ratio(2 * precision * sensitivity, precision + sensitivity, empty),
        "specificity": _ratio(tn, tn + fp, tn + fp == 0),
        "accuracy": (tp + tn) / pred.size,
        "hd95": hd95(pred, target),
    }


def summarise(rows: list[dict[str, float]], names=METRIC_NAMES) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of each metric over images."""
    out = {}
    for name in names:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        out[name] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return out
