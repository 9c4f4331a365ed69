"""Decoding image and mask files with every failure named, truncation included.

OpenCV decodes a truncated JPEG without an error (libjpeg fills the missing part with grey and
prints one line without the file name), so the byte stream is checked before decoding: a JPEG
must end its last scan with an EOI marker, a PNG must carry its IEND chunk.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def truncation_problem(data: bytes) -> str | None:
    """Why this encoded image is incomplete, or None when it looks whole."""
    if data[:2] == b"\xff\xd8":  # JPEG: the last scan (SOS) must be followed by the end marker (EOI)
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            return "truncated JPEG (no end-of-image marker after the last scan)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        return "truncated PNG (no IEND chunk)"
    return None


def decode(path: Path, flags: int) -> tuple[np.ndarray | None, str]:
    """(array, '') or (None, reason) for an image file decoded with cv2 `flags`."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"cannot read {Path(path).name}: {exc.strerror or exc}"
    if not data:
        return None, f"{Path(path).name} is empty (0 bytes)"
    problem = truncation_problem(data)
    if problem:
        return None, f"{Path(path).name}: {problem}"
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None or array.size == 0:
        return None, f"{Path(path).name} cannot be decoded as an image"
    return array, ""


def read_image_rgb(path: Path) -> tuple[np.ndarray | None, str]:
    """uint8 (H, W, 3) RGB (grey replicated to three channels), or (None, reason)."""
    data, reason = decode(path, cv2.IMREAD_COLOR)
    return (None, reason) if data is None else (cv2.cvtColor(data, cv2.COLOR_BGR2RGB), "")


def read_mask_raw(path: Path) -> tuple[np.ndarray | None, str]:
    """The mask's stored values, single channel, 8 or 16 bit (palette PNGs become grey)."""
    return decode(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)


__all__ = ["decode", "read_image_rgb", "read_mask_raw", "truncation_problem"]
