"""Where the tissue is in a frame and how large a pixel is: `FrameGeometry`, validated once.

A DICOM source builds one from its header (llm4seg/dicom/geometry.py: ultrasound regions, Pixel
Spacing), a Python caller from a box or a mask (`FrameGeometry.from_boxes`). The mask stage
(llm4seg/mask_stage.py) uses it for two of its steps: probabilities outside the tissue region are
zero (colour bars, text and Doppler panes are not tissue), and a mask's area in mm^2. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from llm4seg.errors import InputSpecError

# A pixel larger than this is not an image pixel (ultrasound: 0.05-1 mm, radiographs 0.1-0.2 mm).
MAX_MM_PER_PX = 100.0


def _check_mm(mm_per_px: Sequence[float] | None, where: str) -> tuple[float, float] | None:
    if mm_per_px is None:
        return None
    try:
        x, y = (float(v) for v in mm_per_px)
    except (TypeError, ValueError):
        raise InputSpecError(f"{where}: pixel size {mm_per_px!r} is not two numbers (x, y) in mm",
                             hint="e.g. mm_per_px=(0.1, 0.1)") from None
    if not all(math.isfinite(v) and 0 < v <= MAX_MM_PER_PX for v in (x, y)):
        raise InputSpecError(f"{where}: pixel size {mm_per_px!r} mm is not finite and in (0, {MAX_MM_PER_PX:g}]",
                             hint="a pixel size is positive; leave it out (None) when it is not known")
    return x, y


@dataclass(frozen=True)
class FrameGeometry:
    """The tissue region and pixel size of frames of one size (H, W).

    Args:
        shape_hw: the frames' height and width in pixels (None: any size; only without a region).
        region: uint8 (H, W), 1 inside the tissue region(s); None: the whole frame is tissue.
        mm_per_px: (x, y) pixel size in mm; None when not known (areas in pixels only).
        source: where the values came from (for reports), e.g. "SequenceOfUltrasoundRegions".
        notes: what was found, clipped or missing while reading them.
    """

    shape_hw: tuple[int, int] | None
    region: np.ndarray | None = None
    mm_per_px: tuple[float, float] | None = None
    source: str = "given"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "mm_per_px", _check_mm(self.mm_per_px, f"geometry from {self.source}"))
        if self.shape_hw is None:
            if self.region is not None:
                raise InputSpecError("a tissue region needs the frames' size", hint="pass shape_hw=(H, W)")
            return
        h, w = self.shape_hw
        if not (isinstance(h, (int, np.integer)) and isinstance(w, (int, np.integer)) and h > 0 and w > 0):
            raise InputSpecError(f"frame geometry size {self.shape_hw!r} is not two positive integers",
                                 hint="shape_hw=(height, width) of the frames")
        object.__setattr__(self, "shape_hw", (int(h), int(w)))
        if self.region is not None:
            region = np.asarray(self.region)
            if region.shape != self.shape_hw or not (region.dtype == bool or np.isin(region, (0, 1)).all()):
                raise InputSpecError(f"tissue region of shape {region.shape} ({region.dtype}) for frames of "
                                     f"{self.shape_hw}: expected a 0/1 mask of the frames' size",
                                     hint="pass FrameGeometry.from_boxes(shape_hw, [(x0, y0, x1, y1)]) or a 0/1 mask")
            if not region.any():
                raise InputSpecError(f"the tissue region ({self.source}) covers no pixel of the "
                                     f"{self.shape_hw[1]}x{self.shape_hw[0]} frame",
                                     hint="pass region=None to keep the whole frame")
            object.__setattr__(self, "region", region.astype(np.uint8))

    @classmethod
    def from_boxes(cls, shape_hw: tuple[int, int], boxes_xyxy: Sequence[Sequence[int]] = (),
                   mm_per_px: Sequence[float] | None = None, source: str = "given") -> "FrameGeometry":
        """Tissue inside the boxes (x0, y0, x1, y1; inclusive pixel bounds, inside the frame)."""
        h, w = shape_hw
        if not boxes_xyxy:
            return cls(shape_hw, None, mm_per_px, source)
        region = np.zeros((h, w), np.uint8)
        for box in boxes_xyxy:
            x0, y0, x1, y1 = (int(v) for v in box)
            if not (0 <= x0 <= x1 < w and 0 <= y0 <= y1 < h):
                raise InputSpecError(f"tissue box {tuple(box)} is not inside the {w}x{h} frame with x0 <= x1, y0 <= y1",
                                     hint="boxes are (x0, y0, x1, y1) in pixels, inclusive")
            region[y0:y1 + 1, x0:x1 + 1] = 1
        return cls(shape_hw, region, mm_per_px, source)

    def check_frame(self, shape_hw: tuple[int, int]) -> None:
        """Refuse a frame of another size than the geometry's (its region and pixel size would lie)."""
        if self.shape_hw is not None and tuple(shape_hw) != self.shape_hw:
            raise InputSpecError(f"a frame of {shape_hw[1]}x{shape_hw[0]} pixels for a geometry of "
                                 f"{self.shape_hw[1]}x{self.shape_hw[0]} ({self.source})",
                                 hint="give each stream the geometry of its own frames")

    def crop(self, prob: np.ndarray) -> np.ndarray:
        """Probabilities (H, W) with zeros outside the tissue region (the array itself when no region)."""
        self.check_frame(prob.shape[:2])
        return prob if self.region is None else prob * self.region

    def area_mm2(self, mask: np.ndarray) -> float | None:
        """A mask's area in mm^2 (None without a pixel size)."""
        if self.mm_per_px is None:
            return None
        return float(np.count_nonzero(mask)) * self.mm_per_px[0] * self.mm_per_px[1]

    def describe(self) -> dict:
        """What a report says of it: pixel size, its source, tissue bounds and the notes."""
        bounds = None
        if self.region is not None:
            ys, xs = np.nonzero(self.region)
            bounds = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
        return {"mm_per_px": self.mm_per_px, "source": self.source, "tissue_bounds_xyxy": bounds,
                "notes": list(self.notes)}


__all__ = ["FrameGeometry", "MAX_MM_PER_PX"]
