"""The one comparator: every gate and every agreement figure runs an artifact the same way.

Like Polygraphy's `Comparator.run(runners, data_loader)` + `compare_accuracy`, with runtime
Backends as the runners: frames (uint8 images) go through `Segmenter.preprocess` built from the
backend's own manifest entry (the entry being written, in an export), then `Backend.infer`, and
the probabilities are compared with one reference. So a gate tests the preprocessing contract it
records, not a copy of it. Used by the export's gates (FP32/FP16/INT8 ONNX, .pt2, TensorRT
engines, INT8 candidates), `llm4seg bench`'s agreement column and `llm4seg adopt-engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from llm4seg.errors import ExportError, InputSpecError
from llm4seg.metrics import image_metrics
from llm4seg.runtime.backends import Backend
from llm4seg.runtime.segmenter import Segmenter


def inputs_from_frames(backend: Backend, frames: Sequence[np.ndarray], layout: str = "rgb") -> np.ndarray:
    """Frames -> the float32 (N, C, S, S) batch the backend takes, by the Segmenter's preprocessing
    of the backend's manifest entry (also what INT8 calibration reads)."""
    seg = Segmenter(backend, layout=layout)
    return np.stack([seg.preprocess(f) for f in _some(frames)])


def probs_from_frames(backend: Backend, frames: Sequence[np.ndarray], layout: str = "rgb") -> np.ndarray:
    """Frames -> probabilities (N, S, S) at the model's size, chunked to the artifact's batch range.
    The backend is loaded if it is not (and left loaded: the caller owns it)."""
    return Segmenter(backend, layout=layout).infer_batch(inputs_from_frames(backend, frames, layout))


def _some(frames: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
    if len(frames) == 0:  # an empty comparison would report nothing as perfect agreement
        raise InputSpecError("the comparator got no frames", hint="pass at least one image (held-out or calibration)")
    return frames


def agreement(reference: np.ndarray, candidate: np.ndarray, threshold: float,
              masks: np.ndarray | None = None) -> dict[str, Any]:
    """How far candidate probabilities (N, S, S) are from the reference's.

    Returns:
        n, max_abs_err of the probabilities, dice_agreement (mean Dice between the two binary masks
        at `threshold`, 1.0 = identical) and min_dice_agreement; with ground-truth `masks` also
        dice_vs_truth and reference_dice_vs_truth.
    """
    dice = [image_metrics(c, r > threshold, threshold)["dice"] for r, c in zip(reference, candidate)]
    out: dict[str, Any] = {"n": len(reference), "max_abs_err": float(np.abs(reference - candidate).max()),
                           "dice_agreement": float(np.mean(dice)), "min_dice_agreement": float(np.min(dice))}
    if masks is not None:
        out["dice_vs_truth"] = float(np.mean([image_metrics(c, m, threshold)["dice"] for c, m in zip(candidate, masks)]))
        out["reference_dice_vs_truth"] = float(np.mean([image_metrics(r, m, threshold)["dice"]
                                                        for r, m in zip(reference, masks)]))
    return out


def mask_agreement(reference: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Mean Dice between two lists of binary masks, image by image (1.0: identical masks)."""
    return float(np.mean([image_metrics(m.astype(bool), r.astype(bool))["dice"] for r, m in zip(reference, masks)]))


def score(seg: Any, images: list[np.ndarray], masks: list[np.ndarray],
          chunk: int = 8) -> tuple[dict[str, float], list[np.ndarray]]:
    """Dice and IoU of a Segmenter's masks (at each image's own size) against ground truth.

    Returns:
        ({'dice', 'iou'} means over the images, the predicted masks).
    """
    predicted: list[np.ndarray] = []
    for i in range(0, len(images), chunk):
        predicted += seg.segment(images[i:i + chunk])
    per = [image_metrics(p.astype(bool), m) for p, m in zip(predicted, masks)]
    return {"dice": float(np.mean([r["dice"] for r in per])), "iou": float(np.mean([r["iou"] for r in per]))}, predicted


@dataclass
class Comparator:
    """One reference and the frames it was computed on; `run` puts any backend through the same path.

    Args:
        frames: uint8 images in `layout` (the export's held-out images, or seeded random frames).
        reference: the reference probabilities (N, S, S) on those frames (the checkpoint's, or
            another backend's from `probs_from_frames`).
        threshold: the model's mask threshold.
        masks: ground truth for the frames, when known (adds Dice against the truth).
    """

    frames: Sequence[np.ndarray]
    reference: np.ndarray
    threshold: float
    masks: np.ndarray | None = None
    layout: str = "rgb"

    def run(self, backend: Backend) -> tuple[np.ndarray, dict[str, Any]]:
        """The backend's probabilities on the frames and their `agreement` with the reference.
        Loads the backend when needed and closes it after (the comparator owns nothing)."""
        with backend:
            probs = probs_from_frames(backend, self.frames, self.layout)
        return probs, agreement(self.reference, probs, self.threshold, self.masks)

    def check(self, backend: Backend, min_agreement: float, what: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """`run`, then refuse (ExportError) a mask Dice agreement below `min_agreement`.

        Returns:
            (probabilities, agreement stats) of an artifact that passed.
        """
        probs, stats = self.run(backend)
        if stats["dice_agreement"] < min_agreement:
            raise ExportError(f"{what or backend.artifact.name}: mask Dice agreement with the reference is "
                              f"{stats['dice_agreement']:.4f}, below the gate {min_agreement}",
                              hint="report this; the artifact was not kept")
        return probs, stats
