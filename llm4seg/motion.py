"""Motion between consecutive frames, for smoothing that follows it (llm4seg/smoothing.py, kind "flow").

Dense optical flow (OpenCV's DIS, ultrafast preset) on a reduced grey frame (at most FLOW_WIDTH
pixels wide) from the current frame to the previous one, so each pixel of the current frame knows
where it was; the previous map is warped onto the current frame with it (`warp`). Where the flow
cannot be trusted the warp must not be blended in: `reliability` is 1 where the forward and the
backward flow agree (their round trip returns within FB_TOLERANCE_PX) and the warped previous
frame looks like the current one (grey difference under PHOTO_TOLERANCE), falling smoothly to 0
beyond. Published as motion-corrected moving averages for video segmentation; torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FLOW_WIDTH = 160  # the flow is computed at this width (the frame's aspect kept): ~0.2 ms per flow on 2 cores
FB_TOLERANCE_PX = 1.0  # forward-backward round trip allowed, in reduced-frame pixels
PHOTO_TOLERANCE = 20.0  # grey difference (0-255) after warping still counted as the same surface


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def pixel_grid(shape_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """float32 (x, y) coordinates of every pixel, made once per frame size (a stream keeps its size)."""
    if shape_hw not in _GRIDS:
        if len(_GRIDS) > 8:
            _GRIDS.clear()
        h, w = shape_hw
        _GRIDS[shape_hw] = tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    return _GRIDS[shape_hw]


def reduced(grey: np.ndarray, width: int = FLOW_WIDTH) -> np.ndarray:
    """uint8 grey (H, W) -> at most `width` wide (area averaging), the aspect kept."""
    h, w = grey.shape
    if w <= width:
        return np.ascontiguousarray(grey)
    return cv2.resize(grey, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


@dataclass
class Motion:
    """The motion from the previous frame to the current one, at the reduced size.

    Args:
        flow: float32 (h, w, 2): current pixel x was at x + flow in the previous frame.
        reliability: float32 (h, w) in [0, 1].
        scale: full-size pixels per reduced pixel (x, y).
    """

    flow: np.ndarray
    reliability: np.ndarray
    scale: tuple[float, float]

    def reliable_fraction(self) -> float:
        """Share of the frame whose motion is trusted (a scene cut leaves little)."""
        return float((self.reliability > 0.5).mean())

    def at_size(self, shape_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sampling maps x and y for cv2.remap, reliability) at the full frame size."""
        h, w = shape_hw
        flow = cv2.resize(self.flow * np.float32(self.scale), (w, h), interpolation=cv2.INTER_LINEAR)
        grid_x, grid_y = pixel_grid((h, w))
        map_x = grid_x + flow[..., 0]
        map_y = grid_y + flow[..., 1]
        reliability = cv2.resize(self.reliability, (w, h), interpolation=cv2.INTER_LINEAR)
        return map_x, map_y, reliability

    def warp(self, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the previous frame's map (H, W) warped onto the current frame, reliability (H, W))."""
        map_x, map_y, reliability = self.at_size(previous.shape[:2])
        warped = cv2.remap(previous.astype(np.float32, copy=False), map_x, map_y, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        outside = (map_x < 0) | (map_y < 0) | (map_x > previous.shape[1] - 1) | (map_y > previous.shape[0] - 1)
        reliability[outside] = 0.0  # what came in from beyond the frame has no past
        return warped, reliability


class MotionEstimator:
    """Dense flow between consecutive grey frames of one stream (not thread-safe: one per stream)."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def between(self, previous: np.ndarray, current: np.ndarray, full_hw: tuple[int, int]) -> Motion:
        """The motion from `previous` to `current` (both reduced uint8 grey of one size)."""
        back = self._dis.calc(current, previous, None)  # current(x) ~ previous(x + back(x))
        fwd = self._dis.calc(previous, current, None)  # previous(y) ~ current(y + fwd(y))
        h, w = current.shape
        grid_x, grid_y = pixel_grid((h, w))
        map_x, map_y = grid_x + back[..., 0], grid_y + back[..., 1]
        fwd_there = cv2.remap(fwd, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        round_trip = np.hypot(back[..., 0] + fwd_there[..., 0], back[..., 1] + fwd_there[..., 1])
        seen = cv2.remap(previous, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        photo = np.abs(seen.astype(np.float32) - current.astype(np.float32))
        reliability = np.exp(-(round_trip / FB_TOLERANCE_PX) ** 2) * np.exp(-(photo / PHOTO_TOLERANCE) ** 2)
        scale = (full_hw[1] / w, full_hw[0] / h)
        return Motion(back, reliability.astype(np.float32), scale)


__all__ = ["FB_TOLERANCE_PX", "FLOW_WIDTH", "Motion", "MotionEstimator", "PHOTO_TOLERANCE", "reduced"]
