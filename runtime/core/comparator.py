"""The one comparator: every gate and every agreement figure runs an artifact the same way.

Like Polygraphy's `Comparator.run(runners, data_loader)` + `compare_accuracy`, with the runtime's
frame runners: frames (uint8 images) go through the runner of the backend's own manifest entry
(the entry being written, in an export: host contract or frames graph), and the probabilities at
each frame's size are compared with one reference. So a gate tests the preprocessing contract it
records, not a copy of it. Used by the export's gates (FP32/FP16/INT8 ONNX, .pt2, TensorRT
engines, INT8 candidates), `llm4seg bench`'s agreement column and `llm4seg adopt-engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from llm4seg.errors import ExportError, InputSpecError
from llm4seg.metrics import image_metrics, mask_dice
from llm4seg.runtime.core.backends import Backend
from llm4seg.runtime.core.runner import HostRunner, runner_for


@dataclass(frozen=True)
class Tolerance:
    """What a gate accepts (Polygraphy-style: raw outputs first, derived masks second).

    Args:
        mean_abs: bound on the mean absolute probability error over every pixel of every frame.
        max_abs: bound on the largest absolute probability error of any pixel.
        min_agreement: bound on the mean mask Dice agreement over the frames where the reference or
            the candidate has foreground (frames where both are empty say nothing and are not counted;
            when every reference mask is empty, masks certify nothing and the probability bounds decide).
        max_truth_drop: where set and the frames have ground truth, the masks are judged by their
            mean Dice against the truth instead: at most this much below the reference's on the same
            frames (0.005: half a point). A weak model's masks move at many boundary pixels under
            quantization without getting worse; agreement with the reference would refuse that.
    """

    mean_abs: float
    max_abs: float
    min_agreement: float = 0.99
    max_truth_drop: float | None = None

    def with_agreement(self, min_agreement: float) -> "Tolerance":
        """The same probability bounds with another mask-agreement bound."""
        return Tolerance(self.mean_abs, self.max_abs, min_agreement, self.max_truth_drop)

    def with_truth_drop(self, max_truth_drop: float) -> "Tolerance":
        """The same bounds, masks judged against the ground truth where the frames have it."""
        return Tolerance(self.mean_abs, self.max_abs, self.min_agreement, max_truth_drop)

    def judges_truth(self, stats: dict[str, Any]) -> bool:
        """Whether masks are judged by Dice against the truth (a truth bound and truth in `stats`)."""
        return self.max_truth_drop is not None and "dice_vs_truth" in stats


# Probability bounds per precision, against the reference the gate uses (the checkpoint for FP32 and
# FP16, the FP32 graph for INT8). FP32: folds and the frames graph's own resize arithmetic moved a
# probability by 3.4e-3 at most (max) and 1e-5 on average with the suite's checkpoint
# (tests/export/test_frames_graph.py holds the frames graphs to the FP32 bound); a mean-shift, colour
# or resize-rule fault moved the mean by 0.06-0.2 (tests/runtime/test_comparator.py). FP16: half-precision activations. INT8: quantized
# activations move single boundary pixels a lot, so its max bound is loose and its mean bound decides.
TOLERANCES = {"fp32": Tolerance(mean_abs=1e-3, max_abs=0.02), "fp16": Tolerance(mean_abs=5e-3, max_abs=0.15),
              "int8": Tolerance(mean_abs=0.03, max_abs=0.9)}


def tolerance_for(precision: str, min_agreement: float = 0.99) -> Tolerance:
    """The gate's bounds for an artifact of `precision` (fp32, fp16, int8) and a mask-agreement bound."""
    return TOLERANCES.get(precision, TOLERANCES["fp32"]).with_agreement(min_agreement)


def inputs_from_frames(backend: Backend, frames: Sequence[np.ndarray], layout: str = "rgb") -> np.ndarray:
    """Frames -> the float32 (N, C, S, S) batch a float graph takes, by the host runner's contract
    for the backend's manifest entry (also what INT8 calibration reads)."""
    runner = HostRunner(backend, layout)
    return np.stack([runner.tensor(runner.rgb(f)) for f in _some(frames)])


def probs_from_frames(backend: Backend, frames: Sequence[np.ndarray], layout: str = "rgb") -> list[np.ndarray]:
    """Frames -> probabilities at each frame's own size (float32 (H, W) each), the way a user runs the
    artifact: its frame runner (host contract for float graphs, in-graph for frames graphs).
    The backend is loaded if it is not (and left loaded: the caller owns it)."""
    return runner_for(backend, layout).probs(list(_some(frames)))


def _some(frames: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
    if len(frames) == 0:  # an empty comparison would report nothing as perfect agreement
        raise InputSpecError("the comparator got no frames", hint="pass at least one image (held-out or calibration)")
    return frames


def require_finite(probs: Sequence[np.ndarray], what: str,
                   hint: str = "the weights or the graph hold non-finite values; re-train or re-export") -> None:
    """An ExportError when any probability of `what` is NaN or infinite (two NaN outputs would
    otherwise 'agree')."""
    bad = sum(int((~np.isfinite(p)).sum()) for p in probs)
    if bad:
        raise ExportError(f"{what} gave {bad} non-finite probabilit{'y' if bad == 1 else 'ies'} (NaN or inf)",
                          hint=hint)


def _foreground_dice(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Mask Dice of each (reference, candidate) pair of boolean masks where either has foreground:
    two empty masks say nothing and are not counted."""
    return [d for d in (mask_dice(r, c) for r, c in pairs) if d is not None]


def agreement(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], threshold: float,
              masks: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """How far candidate probabilities are from the reference's, frame by frame (frames may differ
    in size; an (N, S, S) array is N frames).

    Returns:
        n; max_abs_err and mean_abs_err of the probabilities; mask_frames (frames where the reference
        or the candidate mask has foreground), reference_foreground_frames, dice_agreement and
        min_dice_agreement (mask Dice over mask_frames; 1.0 and `masks_certified` False when there
        are none); with ground-truth `masks` also dice_vs_truth and reference_dice_vs_truth.
    """
    if len(reference) != len(candidate):
        raise InputSpecError(f"{len(candidate)} candidate frames for {len(reference)} reference frames",
                             hint="compare outputs of the same frames")
    require_finite(reference, "the reference")
    require_finite(candidate, "the candidate")
    errors = [np.abs(r.astype(np.float64) - c) for r, c in zip(reference, candidate)]
    pixels = sum(e.size for e in errors)
    with_fg = [(r > threshold, c > threshold) for r, c in zip(reference, candidate)]
    dice = _foreground_dice(with_fg)
    out: dict[str, Any] = {"n": len(reference), "max_abs_err": float(max(e.max() for e in errors)),
                           "mean_abs_err": float(sum(e.sum() for e in errors) / pixels),
                           "mask_frames": len(dice),
                           "reference_foreground_frames": sum(int(r.any()) for r, _ in with_fg),
                           "dice_agreement": float(np.mean(dice)) if dice else 1.0,
                           "min_dice_agreement": float(np.min(dice)) if dice else 1.0}
    out["masks_certified"] = out["reference_foreground_frames"] > 0
    if masks is not None:
        out["dice_vs_truth"] = float(np.mean([image_metrics(c, m, threshold)["dice"] for c, m in zip(candidate, masks)]))
        out["reference_dice_vs_truth"] = float(np.mean([image_metrics(r, m, threshold)["dice"]
                                                        for r, m in zip(reference, masks)]))
    return out


def mask_agreement(reference: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Mean Dice between two lists of binary masks over the frames where either has foreground
    (1.0: identical; two empty masks are not counted; 1.0 when no frame has any, which says nothing)."""
    dice = _foreground_dice([(r.astype(bool), m.astype(bool)) for r, m in zip(reference, masks)])
    return float(np.mean(dice)) if dice else 1.0


def verdict(stats: dict[str, Any], tolerance: Tolerance) -> list[str]:
    """What fails `tolerance` in `agreement` stats (empty: the gate passes)."""
    failed = []
    if stats["mean_abs_err"] > tolerance.mean_abs:
        failed.append(f"mean probability error {stats['mean_abs_err']:.2e} > {tolerance.mean_abs:.0e}")
    if stats["max_abs_err"] > tolerance.max_abs:
        failed.append(f"max probability error {stats['max_abs_err']:.3g} > {tolerance.max_abs:g}")
    if tolerance.judges_truth(stats):
        drop = stats["reference_dice_vs_truth"] - stats["dice_vs_truth"]
        if drop > tolerance.max_truth_drop:
            failed.append(f"Dice against the truth {stats['dice_vs_truth']:.4f}, {100 * drop:.2f} points below the "
                          f"reference's {stats['reference_dice_vs_truth']:.4f} (at most "
                          f"{100 * tolerance.max_truth_drop:g} allowed)")
    elif stats["mask_frames"] and stats["dice_agreement"] < tolerance.min_agreement:
        failed.append(f"mask Dice agreement {stats['dice_agreement']:.4f} < {tolerance.min_agreement} "
                      f"(over the {stats['mask_frames']} frame(s) with foreground)")
    return failed


def gate_record(stats: dict[str, Any], tolerance: Tolerance) -> dict[str, Any]:
    """The bounds a gate applied and what decided it, for the manifest's `parity`."""
    if tolerance.judges_truth(stats):
        return {"mean_abs_err_max": tolerance.mean_abs, "max_abs_err_max": tolerance.max_abs,
                "max_dice_vs_truth_drop": tolerance.max_truth_drop,
                "masks": "Dice against the held-out ground truth, beside the reference's on the same frames"}
    masks = ("mask agreement counted over the frames with foreground" if stats["masks_certified"] else
             "the reference's masks are all empty on these frames: mask agreement certifies nothing, "
             "the probability bounds decided")
    return {"mean_abs_err_max": tolerance.mean_abs, "max_abs_err_max": tolerance.max_abs,
            "min_dice_agreement": tolerance.min_agreement, "masks": masks}


def score(seg: Any, images: list[np.ndarray], masks: list[np.ndarray],
          chunk: int = 8) -> tuple[dict[str, float], list[np.ndarray]]:
    """Dice and IoU of a Segmenter's masks (at each image's own size) against ground truth.

    Returns:
        ({'dice', 'iou'} means over the images, the probabilities at each image's size; the masks
        are probabilities > the Segmenter's threshold).
    """
    probs: list[np.ndarray] = []
    for i in range(0, len(images), chunk):
        probs += seg.segment(images[i:i + chunk], binary=False)
    per = [image_metrics(p > seg.threshold, m) for p, m in zip(probs, masks)]
    return {"dice": float(np.mean([r["dice"] for r in per])), "iou": float(np.mean([r["iou"] for r in per]))}, probs


@dataclass
class Comparator:
    """One reference and the frames it was computed on; `run` puts any backend through the same path.

    Args:
        frames: uint8 images in `layout` (the export's gate frames: held-out images at native,
            reduced and enlarged sizes, some tinted so their channels differ; or seeded random frames).
        reference: the reference probabilities on those frames, at each frame's size (the
            checkpoint's through the training contract, or another backend's from `probs_from_frames`).
        threshold: the model's mask threshold.
        masks: ground truth for the frames at their sizes, when known (adds Dice against the truth).
    """

    frames: Sequence[np.ndarray]
    reference: Sequence[np.ndarray]
    threshold: float
    masks: Sequence[np.ndarray] | None = None
    layout: str = "rgb"

    def run(self, backend: Backend) -> tuple[list[np.ndarray], dict[str, Any]]:
        """The backend's probabilities on the frames and their `agreement` with the reference.
        Loads the backend when needed and closes it after (the comparator owns nothing)."""
        with backend:
            probs = probs_from_frames(backend, self.frames, self.layout)
        return probs, agreement(self.reference, probs, self.threshold, self.masks)

    def check(self, backend: Backend, tolerance: Tolerance, what: str | None = None) -> tuple[list[np.ndarray], dict[str, Any]]:
        """`run`, then refuse (ExportError) probabilities outside `tolerance` or masks that disagree.

        Returns:
            (probabilities, agreement stats with the applied bounds under 'gate') of an artifact that passed.
        """
        probs, stats = self.run(backend)
        stats["gate"] = gate_record(stats, tolerance)
        failed = verdict(stats, tolerance)
        if failed:
            raise ExportError(f"{what or backend.artifact.name} fails its gate against the reference on "
                              f"{stats['n']} frames: {'; '.join(failed)}",
                              hint="the artifact was not kept; a preprocessing or numerics fault gives this: report it")
        return probs, stats
