"""Metrics against hand-computed cases, including the empty-mask rule and HD95."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llm4seg.metrics import hd95, image_metrics, summarise


def square(size, top, left, side):
    m = np.zeros((size, size), bool)
    m[top:top + side, left:left + side] = True
    return m


def test_hand_computed_overlap():
    target = square(10, 0, 0, 4)         # 16 pixels
    pred = square(10, 0, 2, 4)           # 16 pixels, 8 overlap
    m = image_metrics(pred.astype(np.float32), target)
    # tp=8, fp=8, fn=8, tn=76
    assert m["iou"] == pytest.approx(8 / 24)
    assert m["dice"] == pytest.approx(16 / 32)
    assert m["sensitivity"] == pytest.approx(0.5) and m["precision"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(76 / 84)
    assert m["accuracy"] == pytest.approx(84 / 100)


def test_threshold_is_strictly_greater():
    target = square(4, 0, 0, 2)
    prob = np.where(target, 0.5, 0.0).astype(np.float32)
    assert image_metrics(prob, target)["dice"] == 0.0
    assert image_metrics(prob + 0.01 * target, target)["dice"] == 1.0


def test_empty_mask_rule():
    empty = np.zeros((8, 8), bool)
    both = image_metrics(empty, empty)
    assert both["iou"] == both["dice"] == both["precision"] == both["sensitivity"] == 1.0 and both["hd95"] == 0.0
    fp_only = image_metrics(square(8, 0, 0, 2), empty)
    assert fp_only["iou"] == fp_only["dice"] == 0.0
    assert fp_only["hd95"] == pytest.approx(math.hypot(8, 8))
    missed = image_metrics(empty, square(8, 0, 0, 2))
    assert missed["dice"] == missed["precision"] == missed["sensitivity"] == 0.0


def test_hd95_of_shifted_squares():
    a = square(32, 5, 5, 10)
    b = square(32, 5, 8, 10)  # shifted 3 px right
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, a) == 0.0


def test_summary_mean_and_sd():
    rows = [{"dice": 0.5}, {"dice": 1.0}]
    s = summarise(rows, names=("dice",))
    assert s["dice"]["mean"] == 0.75 and s["dice"]["sd"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
