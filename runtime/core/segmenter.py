"""Segmenter: the Python API of the frame runtime. Frames in, masks (and their quality) out.

    with Segmenter("ART/model.onnx") as seg:                 # or model.frames.onnx, grpc://HOST:8001/segment
        masks = seg.segment(frames)                           # uint8 0/1 at each frame's size
        results = seg.segment_scored(frames, region=geometry) # FrameResult: mask, confidence, flags, area_mm2
        stream = seg.stream(smooth="ema")                     # smoothing and flags across calls
        for frame in video:
            result = stream.process(frame)[0]

A Segmenter is a frame runner (runtime/core/runner.py) plus a mask stage per call or per stream
(llm4seg/mask_stage.py): it re-implements neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.errors import InputSpecError
from llm4seg.geometry import FrameGeometry
from llm4seg.mask_stage import FrameResult
from llm4seg.quality import low_confidence_of
from llm4seg.runtime.core.backends import Backend
from llm4seg.runtime.core.runner import FrameRunner, load_runner
from llm4seg.runtime.core.stream import SegmentStream
from llm4seg.smoothing import Smoother, smoother_from_text


def geometry_from(region: Any, mm_per_px: Any) -> FrameGeometry | None:
    """A FrameGeometry from the API's `region` (a FrameGeometry, a 0/1 (H, W) mask, or None) and
    `mm_per_px` ((x, y) mm, or None)."""
    if isinstance(region, FrameGeometry):
        if mm_per_px is not None:
            raise InputSpecError("mm_per_px given beside a FrameGeometry that carries its own",
                                 hint="pass the pixel size inside the FrameGeometry")
        return region
    if region is None and mm_per_px is None:
        return None
    mask = None if region is None else np.asarray(region)
    return FrameGeometry(None if mask is None else mask.shape[:2], mask, mm_per_px, source="given")


class Segmenter:
    """A frame runner for an artifact, with the mask stage around it.

    Args:
        artifact: a .onnx, .plan or .pt2 written by `llm4seg export`, a served model's URL
            (grpc://HOST:8001/segment), or a Backend.
        backend: force a backend key (default: by the artifact).
        layout: the frames' channel order: 'bgr' (OpenCV's default), 'rgb' or 'gray'.
        bit_depth: for uint16 frames, the bits the device uses (12 for 0-4095); required for them.
        backend_options: passed to the backend (threads=, device=, compile=, timeout_s=, ...).

    Resizing, scaling, normalisation, colour order and tensor layout follow the artifact's manifest.
    """

    def __init__(self, artifact: Path | str | Backend, backend: str | None = None, layout: str = "bgr",
                 bit_depth: int | None = None, **backend_options: Any) -> None:
        self.runner: FrameRunner = load_runner(artifact, backend, layout, bit_depth, **backend_options)
        self.backend, self.entry = self.runner.backend, self.runner.entry
        self.layout, self.bit_depth = layout, bit_depth
        self.contract = self.entry.contract
        self.threshold = self.entry.threshold
        self.low_confidence, self.low_confidence_source = low_confidence_of(self.entry.quality)

    def __enter__(self) -> "Segmenter":
        self.runner.load()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def load(self) -> "Segmenter":
        """Load the backend (a no-op when loaded)."""
        self.runner.load()
        return self

    def close(self) -> None:
        """Close the backend (waits for calls in flight); later calls raise until it is loaded again."""
        self.runner.close()

    def segment(self, frames: Any, binary: bool = True) -> list[np.ndarray]:
        """Frames of any size and layout -> one mask (uint8 0/1) per frame at its size, or with
        `binary=False` its probabilities (float32). No region, no quality: `segment_scored` has them."""
        probs = self.runner.probs(frames)
        return [self.contract.mask_from_prob(p) for p in probs] if binary else probs

    def segment_one(self, frame: np.ndarray, binary: bool = True) -> np.ndarray:
        """One frame -> its mask (or probabilities) at its size."""
        return self.segment([frame], binary)[0]

    def stream(self, smooth: str | Smoother | None = None, region: Any = None, mm_per_px: Any = None) -> SegmentStream:
        """A stream whose frames go through one mask stage across calls (smoothing, jump flags):
        `stream.process(frames)` -> FrameResult per frame.

        Args:
            smooth: a Smoother, or its text (none, ema[:ALPHA], median[:WINDOW], flow[:ALPHA]).
            region: the frames' tissue region: a FrameGeometry or a 0/1 (H, W) mask.
            mm_per_px: (x, y) pixel size in mm, for areas in mm^2.
        """
        smoother = smoother_from_text(smooth) if isinstance(smooth, str) or smooth is None else smooth
        return SegmentStream.of(self.runner, smoother, geometry_from(region, mm_per_px))

    def segment_scored(self, frames: Any, region: Any = None, mm_per_px: Any = None) -> list[FrameResult]:
        """Consecutive frames of one stream -> FrameResult each (mask, prob, confidence, flags, area
        in px and mm^2), through one mask stage: `region` (a FrameGeometry or a 0/1 mask of the
        frames' size) bounds the masks, `mm_per_px` gives areas in mm^2. For smoothing and flags
        across calls use `stream()`."""
        return self.stream(None, region, mm_per_px).process(frames)


__all__ = ["Segmenter", "geometry_from"]
