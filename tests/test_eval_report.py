"""Eval overlays are drawn at each image's own size, with a legend and the per-image Dice (issue 13, item 10)."""

from __future__ import annotations

import cv2
import numpy as np

import llm4seg
from llm4seg.data.datasets import load_dataset
from llm4seg.evaluate import evaluate_model, write_report


def test_overlays_at_native_size_with_legend(trained_checkpoint, tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(root / "images" / f"c{i}.png"), rng.integers(0, 255, (280, 300, 3), dtype=np.uint8))
        mask = np.zeros((280, 300), np.uint8)
        mask[60:200, 80:220] = 1
        cv2.imwrite(str(root / "masks" / f"c{i}.png"), mask)
    model = llm4seg.load_checkpoint(trained_checkpoint)
    data = load_dataset(str(root), None, model.config.image_size)
    rows, probs = evaluate_model(model, data, __import__("torch").device("cpu"))
    write_report(tmp_path / "report", rows, probs, data, 0.5, n_examples=1)
    written = sorted((tmp_path / "report" / "overlays").iterdir())
    assert written
    for path in written:
        image = cv2.imread(str(path))
        assert image.shape == (280, 300, 3)  # the image's own size, not the model's 64x64
        green = (image[:, :, 1] > 150) & (image[:, :, 0] < 60) & (image[:, :, 2] < 60)
        assert green.sum() > 100  # the truth outline (and the legend's text)
