"""Segmenter: video frames in, masks at the frame's size out; pre/post-processing from the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from llm4seg.errors import InputSpecError
from llm4seg.runtime.backends import Backend, load_backend

LAYOUTS = ("bgr", "rgb", "gray")


def to_rgb(frame: np.ndarray, layout: str) -> np.ndarray:
    """uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) in `layout` -> uint8 (H, W, 3) RGB."""
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
        raise InputSpecError(f"a frame must be an (H, W) or (H, W, C) array, got {getattr(frame, 'shape', type(frame))}",
                             hint="pass the array OpenCV returns from VideoCapture.read()")
    if frame.dtype != np.uint8:
        if frame.dtype in (np.float32, np.float64) and frame.max(initial=0) <= 1.0:
            frame = (frame * 255).round().astype(np.uint8)
        elif frame.dtype == np.uint16:
            frame = (frame >> 8).astype(np.uint8)
        else:
            raise InputSpecError(f"frame dtype {frame.dtype} is not supported",
                                 hint="pass uint8 (0-255), uint16, or float in [0, 1]")
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if layout == "bgr" else cv2.COLOR_RGBA2RGB)
    if frame.shape[2] != 3:
        raise InputSpecError(f"frame has {frame.shape[2]} channels", hint="pass 1, 3 or 4 channels")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if layout == "bgr" else frame


class Segmenter:
    """Wraps a backend. `segment(frames)` returns masks (or probabilities) at each frame's size.

    artifact: a .onnx, .plan or checkpoint folder (or a Backend). layout: 'bgr' (OpenCV's
    default), 'rgb' or 'gray'.
    """

    def __init__(self, artifact: Path | str | Backend, backend: str | None = None, layout: str = "bgr",
                 **backend_options: Any) -> None:
        if layout not in LAYOUTS:
            raise InputSpecError(f"layout {layout!r} is not known", hint=f"choose one of {', '.join(LAYOUTS)}")
        self.backend = artifact if isinstance(artifact, Backend) else load_backend(artifact, backend, **backend_options)
        self.layout = layout
        m = self.backend.manifest
        pre = m["preprocess"]
        self.size, self.threshold = int(m["image_size"]), float(m["threshold"])
        self.max_batch = int(m["batch"]["max"])
        self.mean = np.array(pre["mean"], np.float32).reshape(1, 1, 3)
        self.std = np.array(pre["std"], np.float32).reshape(1, 1, 3)
        self.extra_scale = 1 / 255.0 if pre.get("paper_double_scaling") else 1.0

    def __enter__(self) -> "Segmenter":
        self.backend.load()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """One frame -> float32 (3, S, S), normalised as at training."""
        rgb = to_rgb(frame, self.layout)
        h, w = rgb.shape[:2]
        interp = cv2.INTER_AREA if h >= self.size and w >= self.size else cv2.INTER_LINEAR
        x = cv2.resize(rgb, (self.size, self.size), interpolation=interp).astype(np.float32) * (1 / 255.0)
        return (((x - self.mean) / self.std) * self.extra_scale).transpose(2, 0, 1)

    def postprocess(self, prob: np.ndarray, shape_hw: tuple[int, int], binary: bool) -> np.ndarray:
        """prob (S, S) -> (H, W): uint8 {0, 1} mask, or float32 probabilities."""
        h, w = shape_hw
        full = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        return (full > self.threshold).astype(np.uint8) if binary else full

    def infer_batch(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 (N, 3, S, S) -> probabilities (N, S, S), chunked to the artifact's batch range."""
        outs = [self.backend.infer(x[i:i + self.max_batch])[:, 0] for i in range(0, len(x), self.max_batch)]
        return np.concatenate(outs)

    def segment(self, frames: np.ndarray | Sequence[np.ndarray], binary: bool = True) -> list[np.ndarray]:
        """Frames of any size and layout -> one mask per frame, at that frame's size."""
        # A single 2-D or 3-D array is one frame; a 4-D array or a list is several.
        frames = [frames] if isinstance(frames, np.ndarray) and frames.ndim in (2, 3) else list(frames)
        if not frames:
            return []
        x = np.stack([self.preprocess(f) for f in frames])
        probs = self.infer_batch(x)
        return [self.postprocess(p, f.shape[:2], binary) for p, f in zip(probs, frames)]

    def segment_one(self, frame: np.ndarray, binary: bool = True) -> np.ndarray:
        return self.segment([frame], binary)[0]


def overlay(frame_bgr: np.ndarray, mask: np.ndarray, mode: str = "contour", color=(0, 255, 0), alpha: float = 0.4,
            thickness: int = 2) -> np.ndarray:
    """Draw a mask on a BGR frame: its outline ('contour') or a colour blend ('fill')."""
    out = frame_bgr.copy() if frame_bgr.ndim == 3 else cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    m = mask.astype(bool)
    if mode == "fill":
        tint = np.empty_like(out)
        tint[:] = color
        out[m] = (out[m] * (1 - alpha) + tint[m] * alpha).astype(np.uint8)
    elif mode == "contour":
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, thickness)
    else:
        raise InputSpecError(f"overlay mode {mode!r} is not known", hint="use 'contour' or 'fill'")
    return out
