"""What every video sink shares (files, OpenCV writers, GStreamer appsrc): the overlay of each
frame, and one frame size per output. Its own module so that the sinks and the GStreamer door
both build on it without importing each other."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from llm4seg.runtime.core.overlay import overlay


class ResizingSink:
    """The common part: overlay, and one frame size per file (a source that changes resolution
    mid-stream has its frames resized to the first size, counted in `resized`)."""

    def __init__(self, fps: float, mode: str) -> None:
        self.fps, self.mode = fps, mode
        self.codec: str | None = None
        self.container: str | None = None
        self.size_wh: tuple[int, int] | None = None
        self.written = 0
        self.resized = 0

    def _frame_image(self, frame: Any) -> np.ndarray:
        image = overlay(frame.image, frame.mask, self.mode, unsure=getattr(frame, "unsure", False))
        if self.size_wh is None:
            self.size_wh = (image.shape[1], image.shape[0])
            self._open(*self.size_wh)
        if (image.shape[1], image.shape[0]) != self.size_wh:
            image = cv2.resize(image, self.size_wh, interpolation=cv2.INTER_AREA)
            self.resized += 1
        return image

    def _open(self, w: int, h: int) -> None:
        raise NotImplementedError


__all__ = ["ResizingSink"]
