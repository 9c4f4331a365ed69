"""Drawing a mask on a frame, as a person watching sees it (video sinks, Holoscan, the DICOM overlay)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from llm4seg.errors import InputSpecError

LOW_CONFIDENCE_COLOR = (0, 165, 255)  # orange (BGR): a frame the quality signal flags as unsure


def overlay(frame_bgr: np.ndarray, mask: np.ndarray, mode: str = "contour", color=(0, 255, 0), alpha: float = 0.4,
            thickness: int = 2, unsure: bool = False) -> np.ndarray:
    """Draw a mask on a BGR frame: its outline ('contour') or a colour blend ('fill'). With
    `unsure` (the frame's low_confidence flag) the outline is dashed and orange, and a fill is
    orange, so a person watching sees which frames the model is unsure of."""
    out = frame_bgr.copy() if frame_bgr.ndim == 3 else cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    m = mask.astype(bool)
    color = LOW_CONFIDENCE_COLOR if unsure else color
    if mode == "fill":
        tint = np.empty_like(out)
        tint[:] = color
        out[m] = (out[m] * (1 - alpha) + tint[m] * alpha).astype(np.uint8)
    elif mode == "contour":
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if unsure:
            _dashed(out, contours, color, thickness)
        else:
            cv2.drawContours(out, contours, -1, color, thickness)
    else:
        raise InputSpecError(f"overlay mode {mode!r} is not known", hint="use 'contour' or 'fill'")
    return out


def _dashed(out: np.ndarray, contours: Any, color: tuple, thickness: int, dash_px: int = 6) -> None:
    """Draw contours as dashes of `dash_px` points with gaps of the same length."""
    for contour in contours:
        points = contour[:, 0, :]
        for start in range(0, len(points), 2 * dash_px):
            piece = points[start:start + dash_px + 1]
            if len(piece) > 1:
                cv2.polylines(out, [piece.reshape(-1, 1, 2)], False, color, thickness)


__all__ = ["LOW_CONFIDENCE_COLOR", "overlay"]
