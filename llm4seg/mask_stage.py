"""The mask stage, its one owner: what happens to a frame's probabilities after inference.

In this order, one instance per stream:
1. tissue-region crop: probabilities outside the frame's tissue region are 0 (`FrameGeometry`);
2. smoothing (optional, causal: llm4seg/smoothing.py) of the cropped probabilities;
3. threshold: mask = prob > the artifact's threshold;
4. confidence and uncertain fraction (llm4seg/quality.py) of what is left;
5. flags: empty, jump (against this stream's previous mask), low_confidence; `unreadable` for a
   frame that could not be read;
6. area in pixels and, with a pixel size, in mm^2.
The crop comes first so that the flags, the confidence, the smoothing and the area all see the
mask that is shown. Every door (the Python API, `video`, Holoscan, Triton's `segment`,
`dicom-listen`, `eval`) holds a MaskStage; none repeats a step. It lives in the core beside the
frame contract (whose step 3 gives the probabilities at the frame's size) because eval uses it
and the core never imports the runtime. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.geometry import FrameGeometry
from llm4seg.quality import (FLAGS, LOW_CONFIDENCE, QUALITY_NOTE, FlickerMeter, check_prob, confidence_of, flags_of,
                             low_confidence_of)
from llm4seg.smoothing import Smoother


@dataclass(frozen=True)
class FrameResult:
    """One frame through the mask stage.

    Args:
        index: the frame's position in its stream.
        mask: uint8 0/1 (H, W), after the crop (None: the frame could not be read).
        prob: float32 (H, W) probabilities after the crop and smoothing (None: unreadable).
        confidence, uncertain_fraction: see llm4seg/quality.py (0 and 1 when unreadable).
        area_px, area_mm2: the mask's area (area_mm2 None without a pixel size).
        dice_prev: Dice with the stream's previous mask (None: none, or both empty).
        flags: names from quality.FLAGS.
    """

    index: int
    mask: np.ndarray | None
    prob: np.ndarray | None
    confidence: float
    uncertain_fraction: float
    area_px: int
    area_mm2: float | None
    dice_prev: float | None
    flags: tuple[str, ...]

    def record(self) -> dict[str, Any]:
        """The JSON-ready per-frame record (frame logs, reports, the served FLAGS)."""
        return {"index": self.index, "confidence": self.confidence, "uncertain_fraction": self.uncertain_fraction,
                "area_px": self.area_px, "area_mm2": self.area_mm2, "dice_prev": self.dice_prev,
                "flags": list(self.flags)}

    def flag_vector(self) -> list[int]:
        """0/1 per name of quality.FLAGS (the served FLAGS tensor's row)."""
        return [int(name in self.flags) for name in FLAGS]


class MaskStage:
    """Probabilities at the frame's size -> mask, quality and area, for one stream (see the module).

    Args:
        threshold: the artifact's mask threshold.
        low_confidence: the confidence below which a frame is flagged, and `low_confidence_source`
            where it came from (the artifact's calibration: `MaskStage.for_entry`).
        smoother: a Smoother for this stream, or None.
        geometry: the frames' tissue region and pixel size, or None (whole frame, no mm).

    Not thread-safe: feed one stream's frames in order with `step`; `summary` for the report.
    """

    MAX_LISTED = 1000  # flagged frame indices kept per flag in the summary

    def __init__(self, threshold: float, low_confidence: float = LOW_CONFIDENCE, low_confidence_source: str = "given",
                 smoother: Smoother | None = None, geometry: FrameGeometry | None = None) -> None:
        if not 0 < float(threshold) < 1:
            raise ConfigError(f"mask threshold {threshold!r} is not in (0, 1)", hint="use the manifest entry's threshold")
        self.threshold, self.low_confidence = float(threshold), float(low_confidence)
        self.low_confidence_source, self.smoother, self.geometry = low_confidence_source, smoother, geometry
        self.flicker = FlickerMeter()
        self.confidences: list[float] = []
        self.flagged: dict[str, list[int]] = {name: [] for name in FLAGS}
        self.counts = dict.fromkeys(FLAGS, 0)
        self.areas_mm2: list[float] = []
        self._next = 0

    @classmethod
    def for_entry(cls, threshold: float, quality: Mapping[str, Any] | None, smoother: Smoother | None = None,
                  geometry: FrameGeometry | None = None) -> "MaskStage":
        """The stage of an artifact: its threshold and its calibrated low-confidence bound (the
        manifest entry's `quality` table)."""
        low, source = low_confidence_of(quality)
        return cls(threshold, low, source, smoother, geometry)

    @property
    def wants_image(self) -> bool:
        """Whether `step` uses the frame itself (the smoother's cut detection)."""
        return self.smoother is not None

    def step(self, prob: np.ndarray, rgb: np.ndarray | None = None, index: int | None = None) -> FrameResult:
        """The next frame of the stream.

        Args:
            prob: float32 (H, W) probabilities at the frame's size (a runner's output).
            rgb: the frame as uint8 RGB (only used when `wants_image`).
            index: the frame's index (default: one more than the last).
        """
        index = self._next if index is None else int(index)
        self._next = index + 1
        try:
            prob = check_prob(prob)
        except ConfigError as exc:
            raise ConfigError(f"frame {index}: {exc.message}", hint=f"{exc.hint}; the frames before it were processed "
                              "(a frame log keeps their records)") from None
        if self.geometry is not None:
            prob = self.geometry.crop(prob)
        if self.smoother is not None:
            grey = None if rgb is None else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            prob = self.smoother.update(prob, grey)
        mask = (prob > self.threshold).astype(np.uint8)
        confidence, uncertain = confidence_of(prob, mask)
        dice_prev = self.flicker.add(mask)
        flags = flags_of(mask, dice_prev, confidence, self.low_confidence)
        area_mm2 = None if self.geometry is None else self.geometry.area_mm2(mask)
        result = FrameResult(index, mask, prob, confidence, uncertain, int(np.count_nonzero(mask)), area_mm2,
                             dice_prev, tuple(flags))
        self.confidences.append(confidence)
        if area_mm2 is not None:
            self.areas_mm2.append(area_mm2)
        self._count(result)
        return result

    def unreadable(self, index: int | None = None) -> FrameResult:
        """The result of a frame that could not be read (no mask; flagged `unreadable`)."""
        index = self._next if index is None else int(index)
        self._next = index + 1
        result = FrameResult(index, None, None, 0.0, 1.0, 0, None, None, ("unreadable",))
        self._count(result)
        return result

    def _count(self, result: FrameResult) -> None:
        for name in result.flags:
            self.counts[name] += 1
            if len(self.flagged[name]) < self.MAX_LISTED:
                self.flagged[name].append(result.index)

    def describe(self) -> str:
        """The smoothing in words ('none' without)."""
        return self.smoother.describe() if self.smoother else "none"

    def summary(self) -> dict[str, Any]:
        """Flicker, confidence (mean, p10, min), flag counts, flagged frame indices, area in mm^2."""
        conf = np.asarray(self.confidences, np.float64)
        areas = np.asarray(self.areas_mm2, np.float64)
        return {"smoothing": self.describe(), "smoothing_resets": self.smoother.resets if self.smoother else 0,
                **self.flicker.summary(),
                "confidence": {"mean": float(conf.mean()), "p10": float(np.percentile(conf, 10)),
                               "min": float(conf.min())} if conf.size else None,
                "flag_counts": dict(self.counts), "flagged_frames": {k: v for k, v in self.flagged.items() if v},
                "area_mm2": {"mean": float(areas.mean()), "max": float(areas.max())} if areas.size else None,
                "rule": QUALITY_NOTE.format(threshold=self.low_confidence, source=self.low_confidence_source)}


__all__ = ["FrameResult", "MaskStage"]
