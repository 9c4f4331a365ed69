"""How much to trust a frame's mask, and a stream's stability. Torch-free (numpy + OpenCV).

- `confidence_of`: confidence = 1 - mean binary entropy (bits) of the probabilities over the
  region that matters (the predicted mask grown by `ROI_MARGIN_PX`, plus every pixel with
  p > ROI_PROB), and the fraction of uncertain pixels (0.2 < p < 0.8) there.
- `flags_of`: empty, jump (Dice < JUMP_DICE with the previous mask, or a mask appearing or
  vanishing), low_confidence (below the artifact's calibrated threshold); `unreadable` is set by
  whoever could not read the frame.
- `FlickerMeter`: frame-to-frame mask Dice over pairs where either mask has foreground (two empty
  masks are not "agreement"), and how often a mask appears or disappears.
- `calibrate_low_confidence`: the export's per-artifact threshold (a percentile on held-out images).

The mask stage (llm4seg/mask_stage.py) puts these together for every door; Dice is the project's
one (`llm4seg.metrics.mask_dice`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import cv2
import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.metrics import mask_dice

ROI_MARGIN_PX = 8  # the predicted region grown by this many pixels (at the frame's size)
ROI_PROB = 0.25  # pixels the model half-considers belong to the region too
UNCERTAIN = (0.2, 0.8)
LOW_CONFIDENCE = 0.75  # only for an artifact whose manifest has no calibrated threshold (older exports)
CALIBRATION_PERCENTILE = 10  # the export flags the least confident tenth of its held-out images
JUMP_DICE = 0.5  # consecutive masks with Dice below this (both non-empty), or one appearing/vanishing
FLAGS = ("empty", "jump", "low_confidence", "unreadable")
QUALITY_NOTE = ("confidence = 1 - mean binary entropy (bits) over the mask grown by 8 px plus pixels with p > 0.25; "
                "low_confidence below {threshold:.3f} ({source}); jump: Dice < 0.5 with the previous mask or a mask "
                "appearing/vanishing")


def _entropy_bits(prob: np.ndarray) -> np.ndarray:
    p = np.clip(prob.astype(np.float32), 1e-6, 1 - 1e-6)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def confidence_of(prob: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(confidence 0..1, uncertain fraction 0..1) of probabilities (H, W) and their mask."""
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * ROI_MARGIN_PX + 1,) * 2, np.uint8)).astype(bool)
    roi = grown | (prob > ROI_PROB)
    values = prob[roi] if roi.any() else prob.ravel()
    uncertain = float(((values > UNCERTAIN[0]) & (values < UNCERTAIN[1])).mean())
    return float(1.0 - _entropy_bits(values).mean()), uncertain


def flags_of(mask: np.ndarray, dice_prev: float | None, confidence: float, low_confidence: float) -> list[str]:
    """The flags of a readable frame (in FLAGS order)."""
    flags = []
    if not mask.any():
        flags.append("empty")
    if dice_prev is not None and dice_prev < JUMP_DICE:  # also a mask appearing or vanishing (Dice 0)
        flags.append("jump")
    if confidence < low_confidence:
        flags.append("low_confidence")
    return flags


def check_prob(prob: Any) -> np.ndarray:
    """A finite float32 (H, W) probability map, or an error naming what it is instead."""
    prob = np.asarray(prob, np.float32)
    if prob.ndim != 2:
        raise ConfigError(f"a probability map must be (H, W), got shape {prob.shape}",
                          hint="pass one frame's probabilities at the frame's size")
    bad = int((~np.isfinite(prob)).sum())
    if bad:
        raise ConfigError(f"the probability map holds {bad} NaN or infinite value(s)",
                          hint="the model's outputs are not finite: its weights or inputs are broken")
    return prob


def calibrate_low_confidence(probs: list[np.ndarray], threshold: float, source: str) -> dict[str, Any]:
    """The low-confidence threshold of an artifact: the CALIBRATION_PERCENTILE-th percentile of
    the confidence of its checkpoint's probabilities on held-out images (the export records it in
    every manifest entry as `quality`). Confidence scales differ from model to model, so a fixed
    threshold would flag nearly every frame of one model and none of another."""
    conf = [confidence_of(p, p > threshold)[0] for p in (check_prob(p) for p in probs)]
    return {"low_confidence": float(np.percentile(conf, CALIBRATION_PERCENTILE)), "percentile": CALIBRATION_PERCENTILE,
            "n": len(conf), "source": source, "rule": QUALITY_NOTE.split(";")[0]}


def low_confidence_of(quality: Mapping[str, Any] | None) -> tuple[float, str]:
    """(threshold, where it came from) for a manifest entry's `quality` table (None: not calibrated)."""
    if quality and "low_confidence" in quality:
        return float(quality["low_confidence"]), (f"the {quality['percentile']}th percentile on {quality['n']} held-out "
                                                  f"images of {quality['source']}, at export")
    return LOW_CONFIDENCE, "a fixed default: this artifact's export recorded no calibration"


@dataclass
class FlickerMeter:
    """Temporal stability of a mask sequence, fed one mask at a time."""

    pair_dice: list[float] = field(default_factory=list)
    toggles: int = 0
    pairs: int = 0
    _last: np.ndarray | None = None

    def add(self, mask: np.ndarray) -> float | None:
        """The next frame's mask (0/1); a change of size starts a new sequence. Returns the Dice
        with the previous mask (None: no previous mask of this size, or both empty)."""
        mask = np.asarray(mask).astype(bool)
        dice = None
        if self._last is not None and self._last.shape == mask.shape:
            self.pairs += 1
            if self._last.any() != mask.any():
                self.toggles += 1
            dice = mask_dice(self._last, mask)
            if dice is not None:
                self.pair_dice.append(dice)
        self._last = mask
        return dice

    def summary(self) -> dict[str, Any]:
        """{"pairs", "pairs_scored" (either mask non-empty), "frame_to_frame_dice" (mean over the
        scored pairs, None when none), "flicker" (1 - that), "toggle_fraction" (a mask appearing or
        vanishing, over all pairs)}."""
        mean = float(np.mean(self.pair_dice)) if self.pair_dice else None
        return {"pairs": self.pairs, "pairs_scored": len(self.pair_dice), "frame_to_frame_dice": mean,
                "flicker": None if mean is None else 1.0 - mean,
                "toggle_fraction": self.toggles / self.pairs if self.pairs else None}


__all__ = ["CALIBRATION_PERCENTILE", "FLAGS", "FlickerMeter", "JUMP_DICE", "LOW_CONFIDENCE", "QUALITY_NOTE",
           "calibrate_low_confidence", "check_prob", "confidence_of", "flags_of", "low_confidence_of"]
