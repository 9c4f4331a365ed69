"""Live video a person can trust: how much masks flicker, optional temporal smoothing of the
probability maps, and a per-frame quality signal with flags. Torch-free (numpy + OpenCV).

- `Smoother`: causal filtering of each frame's probability map (an exponential moving average,
  or the median of the last few maps), reset at a scene cut (the frame's thumbnail changes by
  more than `cut_level`) or a change of frame size, so a new scene never inherits the old mask.
  Both forms are causal: the output of frame t uses frames <= t only, so no frame is delayed;
  the cost is lag (an EMA's step response reaches half its change after ln 2 / -ln(1 - alpha)
  frames), measured in benchmarks/temporal.py.
- `frame_quality`: confidence = 1 - mean binary entropy (bits) of the probabilities over the
  region that matters (the predicted mask grown by `ROI_MARGIN_PX`, plus every pixel with
  p > ROI_PROB); the fraction of uncertain pixels (0.2 < p < 0.8) there; and flags.
- `FlickerMeter`: frame-to-frame mask Dice over pairs where either mask has foreground (two
  empty masks are not "agreement"), and how often a mask appears or disappears.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from llm4seg.errors import ConfigError

ROI_MARGIN_PX = 8  # the predicted region grown by this many pixels (at the frame's size)
ROI_PROB = 0.25  # pixels the model half-considers belong to the region too
UNCERTAIN = (0.2, 0.8)
LOW_CONFIDENCE = 0.75  # only for an artifact whose manifest has no calibrated threshold (older exports)
CALIBRATION_PERCENTILE = 10  # the export flags the least confident tenth of its held-out images
JUMP_DICE = 0.5  # consecutive masks with Dice below this (both non-empty), or one appearing/vanishing
CUT_LEVEL = 40.0  # mean absolute change of a 32x32 grey thumbnail (0-255) that counts as a scene cut
FLAGS = ("empty", "jump", "low_confidence", "unreadable")
QUALITY_NOTE = ("confidence = 1 - mean binary entropy (bits) over the mask grown by 8 px plus pixels with p > 0.25; "
                "low_confidence below {threshold:.3f} ({source}); jump: Dice < 0.5 with the previous mask or a mask "
                "appearing/vanishing")


def _entropy_bits(prob: np.ndarray) -> np.ndarray:
    p = np.clip(prob.astype(np.float32), 1e-6, 1 - 1e-6)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def mask_dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two 0/1 masks, None when both are empty (agreement of nothing is not scored)."""
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return 2.0 * float(np.logical_and(a, b).sum()) / total


def frame_quality(prob: np.ndarray, threshold: float, previous_mask: np.ndarray | None = None,
                  low_confidence: float = LOW_CONFIDENCE) -> dict[str, Any]:
    """The quality of one frame's probabilities (H, W) at the frame's size.

    Returns:
        {"confidence": 0..1, "uncertain_fraction": 0..1, "area_px", "dice_prev" (None when
        there is no previous mask or both are empty), "flags": [names from FLAGS]}.
    """
    prob = np.asarray(prob, np.float32)
    if prob.ndim != 2 or not np.isfinite(prob).all():
        raise ConfigError(f"frame_quality needs a finite (H, W) probability map, got shape {prob.shape}",
                          hint="pass Segmenter.segment(frames, binary=False) output")
    mask = prob > threshold
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * ROI_MARGIN_PX + 1,) * 2, np.uint8)).astype(bool)
    roi = grown | (prob > ROI_PROB)
    where = roi if roi.any() else np.ones_like(roi)
    entropy = _entropy_bits(prob[where])
    confidence = float(1.0 - entropy.mean())
    uncertain = float(((prob[where] > UNCERTAIN[0]) & (prob[where] < UNCERTAIN[1])).mean())
    flags = []
    if not mask.any():
        flags.append("empty")
    dice_prev = None
    if previous_mask is not None and previous_mask.shape == mask.shape:
        dice_prev = mask_dice(previous_mask, mask)
        if dice_prev is not None and dice_prev < JUMP_DICE:  # also a mask appearing or vanishing (Dice 0)
            flags.append("jump")
    if confidence < low_confidence:
        flags.append("low_confidence")
    return {"confidence": confidence, "uncertain_fraction": uncertain, "area_px": int(mask.sum()),
            "dice_prev": dice_prev, "flags": flags}


def calibrate_low_confidence(probs: list[np.ndarray], threshold: float, source: str) -> dict[str, Any]:
    """The low-confidence threshold of an artifact: the CALIBRATION_PERCENTILE-th percentile of
    the confidence of its checkpoint's probabilities on held-out images (the export records it in
    every manifest entry as `quality`). Confidence scales differ from model to model, so a fixed
    threshold would flag nearly every frame of one model and none of another."""
    conf = [frame_quality(p, threshold)["confidence"] for p in probs]
    return {"low_confidence": float(np.percentile(conf, CALIBRATION_PERCENTILE)), "percentile": CALIBRATION_PERCENTILE,
            "n": len(conf), "source": source, "rule": QUALITY_NOTE.split(";")[0]}


def low_confidence_of(manifest: dict[str, Any]) -> tuple[float, str]:
    """(threshold, where it came from) for an artifact's manifest entry."""
    quality = manifest.get("quality") or {}
    if "low_confidence" in quality:
        return float(quality["low_confidence"]), (f"the {quality['percentile']}th percentile on {quality['n']} held-out "
                                                  f"images of {quality['source']}, at export")
    return LOW_CONFIDENCE, "a fixed default: this artifact's export recorded no calibration"


def unreadable_quality() -> dict[str, Any]:
    """The quality record of a frame that could not be read (no probabilities)."""
    return {"confidence": 0.0, "uncertain_fraction": 1.0, "area_px": 0, "dice_prev": None, "flags": ["unreadable"]}


def _thumbnail(frame_bgr: np.ndarray) -> np.ndarray:
    grey = frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr[..., :3], cv2.COLOR_BGR2GRAY)
    if grey.dtype != np.uint8:
        grey = cv2.normalize(grey.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX)
    return cv2.resize(grey.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)


class Smoother:
    """Causal temporal filtering of probability maps, one stream at a time (not thread-safe:
    one Smoother per stream).

    Args:
        kind: "ema" (p_t' = alpha * p_t + (1 - alpha) * p_{t-1}') or "median" (median of the
            last `window` maps).
        alpha: the EMA's weight of the newest frame, in (0, 1]; 0.3 halved flicker at a Dice cost
            under half a point on BUSI sequences (benchmarks/temporal.py, RESULTS.md).
        window: the median's frame count, odd, >= 3.
        cut_level: thumbnail change (mean |difference|, 0-255) that resets the filter.
    """

    def __init__(self, kind: str = "ema", alpha: float = 0.3, window: int = 3, cut_level: float = CUT_LEVEL) -> None:
        if kind not in ("ema", "median"):
            raise ConfigError(f"smoothing {kind!r} is not known", hint="use ema or median (or no smoothing)")
        if not 0 < alpha <= 1:
            raise ConfigError(f"smoothing alpha {alpha} is not in (0, 1]", hint="e.g. 0.5 (1 = no smoothing)")
        if window < 3 or window % 2 == 0:
            raise ConfigError(f"median window {window} must be odd and at least 3", hint="e.g. 3")
        self.kind, self.alpha, self.window, self.cut_level = kind, float(alpha), int(window), float(cut_level)
        self.delay_frames = 0  # causal: frame t's output uses frames <= t
        self.resets = 0
        self._state: np.ndarray | None = None
        self._history: deque[np.ndarray] = deque(maxlen=self.window)
        self._thumb: np.ndarray | None = None

    def describe(self) -> str:
        """The filter in words, for reports."""
        form = f"EMA alpha {self.alpha:g}" if self.kind == "ema" else f"causal median of {self.window} frames"
        return f"{form}, reset at scene cuts (thumbnail change > {self.cut_level:g}/255) and size changes; delay 0 frames"

    def reset(self) -> None:
        """Forget the past (a new scene or stream)."""
        self._state, self._thumb = None, None
        self._history.clear()

    def _is_cut(self, frame_bgr: np.ndarray | None, prob: np.ndarray) -> bool:
        if self._state is None and not self._history:
            return False
        last = self._state if self._state is not None else self._history[-1]
        if last.shape != prob.shape:
            return True
        if frame_bgr is None or self._thumb is None:
            return False
        return float(np.abs(_thumbnail(frame_bgr) - self._thumb).mean()) > self.cut_level

    def update(self, prob: np.ndarray, frame_bgr: np.ndarray | None = None) -> np.ndarray:
        """The smoothed probability map of this frame (float32, its size)."""
        prob = np.asarray(prob, np.float32)
        if self._is_cut(frame_bgr, prob):
            self.reset()
            self.resets += 1
        if frame_bgr is not None:
            self._thumb = _thumbnail(frame_bgr)
        if self.kind == "ema":
            self._state = prob.copy() if self._state is None else self.alpha * prob + (1 - self.alpha) * self._state
            return self._state
        self._history.append(prob)
        return np.median(np.stack(self._history), axis=0).astype(np.float32)


def smoother_from_text(text: str | None) -> Smoother | None:
    """A Smoother from the CLI's `--smooth` value: none, ema, ema:ALPHA, median or median:WINDOW."""
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    kind, _, value = text.strip().lower().partition(":")
    try:
        if kind == "ema":
            return Smoother("ema", alpha=float(value)) if value else Smoother("ema")
        if kind == "median":
            return Smoother("median", window=int(value)) if value else Smoother("median")
    except ValueError:
        pass
    raise ConfigError(f"--smooth {text!r} is not a smoothing", hint="use none, ema (alpha 0.3), ema:0.5, median or median:3")


@dataclass
class FlickerMeter:
    """Temporal stability of a mask sequence, fed one mask at a time."""

    pair_dice: list[float] = field(default_factory=list)
    toggles: int = 0
    pairs: int = 0
    _last: np.ndarray | None = None

    def add(self, mask: np.ndarray) -> None:
        """The next frame's mask (0/1); a change of size starts a new sequence."""
        mask = np.asarray(mask).astype(bool)
        if self._last is not None and self._last.shape == mask.shape:
            self.pairs += 1
            if self._last.any() != mask.any():
                self.toggles += 1
            dice = mask_dice(self._last, mask)
            if dice is not None:
                self.pair_dice.append(dice)
        self._last = mask

    def summary(self) -> dict[str, Any]:
        """{"pairs", "pairs_scored" (either mask non-empty), "frame_to_frame_dice" (mean over the
        scored pairs, None when none), "flicker" (1 - that), "toggle_fraction" (a mask appearing or
        vanishing, over all pairs)}."""
        mean = float(np.mean(self.pair_dice)) if self.pair_dice else None
        return {"pairs": self.pairs, "pairs_scored": len(self.pair_dice), "frame_to_frame_dice": mean,
                "flicker": None if mean is None else 1.0 - mean,
                "toggle_fraction": self.toggles / self.pairs if self.pairs else None}


class StreamQuality:
    """One stream's masks from its probability maps: optional smoothing, then per-frame quality
    and the stream's flicker. Feed frames in order with `step`; `summary` for the report.

    Args:
        threshold: the manifest's mask threshold.
        smoother: a Smoother, or None for the unfiltered masks.
        low_confidence: the confidence below which a frame is flagged (an artifact's own:
            `low_confidence_of(manifest)`, as `Segmenter.low_confidence`).
        low_confidence_source: where that threshold came from, for the report.
    """

    MAX_LISTED = 1000  # flagged frame indices kept per flag in the summary

    def __init__(self, threshold: float, smoother: Smoother | None = None, low_confidence: float = LOW_CONFIDENCE,
                 low_confidence_source: str = "given") -> None:
        self.threshold, self.smoother, self.low_confidence = float(threshold), smoother, low_confidence
        self.low_confidence_source = low_confidence_source
        self.flicker = FlickerMeter()
        self.confidences: list[float] = []
        self.flagged: dict[str, list[int]] = {name: [] for name in FLAGS}
        self.counts = dict.fromkeys(FLAGS, 0)
        self._last_mask: np.ndarray | None = None

    def step(self, index: int, prob: np.ndarray | None, frame_bgr: np.ndarray | None = None) -> tuple[np.ndarray | None, dict]:
        """(mask uint8 0/1, quality) of frame `index`; prob None marks it unreadable (no mask)."""
        if prob is None:
            quality = unreadable_quality()
            mask = None
        else:
            if self.smoother is not None:
                prob = self.smoother.update(prob, frame_bgr)
            quality = frame_quality(prob, self.threshold, self._last_mask, self.low_confidence)
            mask = (prob > self.threshold).astype(np.uint8)
            self.flicker.add(mask)
            self.confidences.append(quality["confidence"])
            self._last_mask = mask
        for name in quality["flags"]:
            self.counts[name] += 1
            if len(self.flagged[name]) < self.MAX_LISTED:
                self.flagged[name].append(index)
        return mask, quality

    def summary(self) -> dict[str, Any]:
        """Flicker, confidence (mean, p10, min), flag counts and the flagged frame indices."""
        conf = np.asarray(self.confidences, np.float64)
        return {"smoothing": self.smoother.describe() if self.smoother else "none",
                "smoothing_resets": self.smoother.resets if self.smoother else 0,
                **self.flicker.summary(),
                "confidence": {"mean": float(conf.mean()), "p10": float(np.percentile(conf, 10)),
                               "min": float(conf.min())} if conf.size else None,
                "flag_counts": dict(self.counts), "flagged_frames": {k: v for k, v in self.flagged.items() if v},
                "rule": QUALITY_NOTE.format(threshold=self.low_confidence, source=self.low_confidence_source)}


__all__ = ["FLAGS", "FlickerMeter", "LOW_CONFIDENCE", "QUALITY_NOTE", "Smoother", "StreamQuality",
           "calibrate_low_confidence", "frame_quality", "low_confidence_of", "mask_dice", "smoother_from_text",
           "unreadable_quality"]
