"""Segmenter: video frames in, masks at the frame's size out; pre/post-processing from the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from llm4seg.contract import FrameContract
from llm4seg.errors import InputSpecError
from llm4seg.runtime.backends import Backend, load_backend
from llm4seg.runtime.temporal import low_confidence_of

LAYOUTS = ("bgr", "rgb", "gray")


def to_uint8(frame: np.ndarray, bit_depth: int | None) -> np.ndarray:
    """Any supported frame dtype -> uint8 0-255. Integer frames wider than 8 bits need their bit
    depth (12-bit ultrasound in uint16 is 0-4095): it is never guessed."""
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        if bit_depth is None or not 9 <= bit_depth <= 16:
            raise InputSpecError(f"a uint16 frame needs its bit depth (got bit_depth={bit_depth!r}); "
                                 f"this frame's maximum is {int(frame.max(initial=0))}",
                                 hint="pass Segmenter(..., bit_depth=12) for 0-4095 data, 16 for 0-65535, "
                                 "or convert frames to uint8")
        top = (1 << bit_depth) - 1
        if frame.max(initial=0) > top:
            raise InputSpecError(f"frame values reach {int(frame.max())}, above {top} for bit_depth={bit_depth}",
                                 hint="pass the bit depth the device really writes")
        return np.round(frame.astype(np.float32) * (255.0 / top)).astype(np.uint8)
    if frame.dtype in (np.float32, np.float64):
        if not np.isfinite(frame).all():
            raise InputSpecError(f"the frame holds {int((~np.isfinite(frame)).sum())} NaN or infinite value(s)",
                                 hint="check the capture or the conversion that produced the frame")
        if frame.min(initial=0) < 0 or frame.max(initial=0) > 1:
            raise InputSpecError(f"a float frame must hold values in [0, 1], got {frame.min():.3g}..{frame.max():.3g}",
                                 hint="scale it to [0, 1], or pass uint8")
        return np.round(frame * 255).astype(np.uint8)
    raise InputSpecError(f"frame dtype {frame.dtype} is not supported",
                         hint="pass uint8 (0-255), uint16 with bit_depth=, or float in [0, 1]")


# Frames above this are refused before any resize (a 40000 x 40000 frame took 83 s): 8K video is 33 M.
MAX_FRAME_PIXELS = 100_000_000


def to_rgb(frame: np.ndarray, layout: str, bit_depth: int | None = None) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) frame in `layout` -> uint8 (H, W, 3) RGB."""
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
        raise InputSpecError(f"a frame must be an (H, W) or (H, W, C) array, got {getattr(frame, 'shape', type(frame))}",
                             hint="pass the array OpenCV returns from VideoCapture.read()")
    if frame.shape[0] * frame.shape[1] > MAX_FRAME_PIXELS:
        raise InputSpecError(f"the frame is {frame.shape[1]} x {frame.shape[0]} pixels, above the "
                             f"{MAX_FRAME_PIXELS:,} the runtime takes", hint="downscale frames at the source (capture "
                             "resolution); the model runs at its image_size anyway")
    if frame.size == 0 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputSpecError(f"the frame is empty (shape {frame.shape})",
                             hint="the source returned no pixels; check the capture before segmenting")
    # (C, H, W) with C first; but (1, W, 3) or (1, W, 4) is a one-row colour frame, not channel-first.
    one_row = frame.ndim == 3 and frame.shape[0] == 1 and frame.shape[2] in (3, 4)
    if frame.ndim == 3 and frame.shape[0] in (1, 3, 4) and frame.shape[0] < frame.shape[2] and not one_row:
        raise InputSpecError(f"the frame's shape {frame.shape} looks channel-first (C, H, W)",
                             hint="pass (H, W, C) frames: frame.transpose(1, 2, 0)")
    if layout == "gray" and frame.ndim == 3 and frame.shape[2] != 1:
        raise InputSpecError(f"layout 'gray' expects (H, W) or (H, W, 1) frames, got {frame.shape[2]} channels",
                             hint="pass layout='bgr' or 'rgb' for colour frames, or convert them to grey first")
    frame = to_uint8(frame, bit_depth)
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if layout == "bgr" else cv2.COLOR_RGBA2RGB)
    if frame.shape[2] != 3:
        raise InputSpecError(f"frame has {frame.shape[2]} channels", hint="pass 1, 3 or 4 channels")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if layout == "bgr" else frame


def contract_of(m: dict[str, Any]) -> FrameContract:
    """The frame contract a manifest entry records; values it does not know are refused, not ignored."""
    layout = m["inputs"][0].get("layout", "NCHW")
    if layout not in ("NCHW", "NHWC"):
        raise InputSpecError(f"the manifest asks for layout={layout!r}, which this runtime does not know",
                             hint="layout: NCHW or NHWC")
    return FrameContract.from_manifest(m)


class Segmenter:
    """Wraps a backend. `segment(frames)` returns masks (or probabilities) at each frame's size.

    Args:
        artifact: a .onnx, .plan or .pt2 written by `llm4seg export` (or a Backend).
        layout: the frames' channel order: 'bgr' (OpenCV's default), 'rgb' or 'gray'.
        bit_depth: for uint16 frames, the bits the device uses (12 for 0-4095); required for them.

    Resizing, scaling, normalisation, colour order and tensor layout follow the artifact's manifest.
    """

    def __init__(self, artifact: Path | str | Backend, backend: str | None = None, layout: str = "bgr",
                 bit_depth: int | None = None, **backend_options: Any) -> None:
        if layout not in LAYOUTS:
            raise InputSpecError(f"layout {layout!r} is not known", hint=f"choose one of {', '.join(LAYOUTS)}")
        if bit_depth is not None and (not isinstance(bit_depth, int) or isinstance(bit_depth, bool)
                                      or not 8 <= bit_depth <= 16):
            raise InputSpecError(f"bit_depth {bit_depth!r} is not an integer from 8 to 16",
                                 hint="e.g. bit_depth=12 for 12-bit ultrasound stored as uint16 (0-4095)")
        self.backend = artifact if isinstance(artifact, Backend) else load_backend(artifact, backend, **backend_options)
        self.layout, self.bit_depth = layout, bit_depth
        m = self.backend.manifest
        self.contract = contract_of(m)
        self.size, self.threshold = self.contract.image_size, self.contract.threshold
        self.low_confidence, self.low_confidence_source = low_confidence_of(self.backend.manifest)
        self.max_batch = int(m["batch"]["max"])
        self.input_layout = m["inputs"][0].get("layout", "NCHW")
        # A frames graph (frames in, the contract inside): which form, and the colour it takes.
        self.frames = m.get("frames")

    def __enter__(self) -> "Segmenter":
        self.backend.load()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the backend (waits for calls in flight); later calls raise until it is loaded again."""
        self.backend.close()

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """One frame -> float32 (3, S, S), by the artifact's frame contract (as training fed the model)."""
        rgb = to_rgb(frame, self.layout, self.bit_depth)
        x = self.contract.tensor_from_image(rgb[:, :, ::-1] if self.contract.color == "BGR" else rgb)
        return x.transpose(1, 2, 0) if self.input_layout == "NHWC" else x

    def to_bgr(self, frame: np.ndarray) -> np.ndarray:
        """One frame in this Segmenter's layout and dtype -> BGR uint8 (what a server's `segment` takes)."""
        if self.layout == "bgr" and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3:
            return np.ascontiguousarray(frame)  # already what the server takes: no copy through RGB
        return np.ascontiguousarray(to_rgb(frame, self.layout, self.bit_depth)[:, :, ::-1])

    def postprocess(self, prob: np.ndarray, shape_hw: tuple[int, int], binary: bool) -> np.ndarray:
        """prob (S, S) -> (H, W): uint8 {0, 1} mask, or float32 probabilities (the contract's step 3)."""
        full = self.contract.prob_at_size(prob, shape_hw)
        return self.contract.mask_from_prob(full) if binary else full

    def infer_batch(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 (N, 3, S, S) -> probabilities (N, S, S), chunked to the artifact's batch range."""
        outs = [self.backend.infer(x[i:i + self.max_batch])[:, 0] for i in range(0, len(x), self.max_batch)]
        return np.concatenate(outs)

    def segment(self, frames: np.ndarray | Sequence[np.ndarray], binary: bool = True) -> list[np.ndarray]:
        """Frames of any size and layout -> one mask per frame, at that frame's size."""
        # A single 2-D or 3-D array is one frame; a 4-D array or a list is several.
        if not isinstance(frames, (np.ndarray, list, tuple)):
            raise InputSpecError(f"segment() takes a frame (an array) or a list of frames, got {type(frames).__name__}",
                                 hint="pass the array OpenCV returns from VideoCapture.read(), or a list of them")
        frames = [frames] if isinstance(frames, np.ndarray) and frames.ndim in (2, 3) else list(frames)
        if not frames:
            return []
        if getattr(self.backend, "takes_frames", False):  # a server's `segment` model: it pre/post-processes
            return self.backend.segment_frames([self.to_bgr(f) for f in frames], binary)
        if self.frames:
            return self._segment_with_graph(frames, binary)
        x = np.stack([self.preprocess(f) for f in frames])
        probs = self.infer_batch(x)
        return [self.postprocess(p, f.shape[:2], binary) for p, f in zip(probs, frames)]

    def frame_input(self, frame: np.ndarray) -> np.ndarray:
        """One frame -> what a frames graph takes: uint8 (H, W, 3) in its colour order (at S x S for
        the model-size form, resized by the contract)."""
        rgb = to_rgb(frame, self.layout, self.bit_depth)
        image = rgb[:, :, ::-1] if self.frames["input_color"] == "BGR" else rgb
        if self.frames["form"] == "any-size":
            return image
        resized = self.contract.resize_image(image)  # what the SDK's own resize stands for
        return resized.astype(np.float32).transpose(2, 0, 1) if self.frames["form"] == "nvinfer" else resized

    def _segment_with_graph(self, frames: list[np.ndarray], binary: bool) -> list[np.ndarray]:
        """Frames through a frames graph: no host normalisation; frames of one size share a batch."""
        inputs = [self.frame_input(f) for f in frames]
        out: list[np.ndarray | None] = [None] * len(frames)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(inputs):
            by_size.setdefault(x.shape, []).append(i)
        for index in by_size.values():
            for k in range(0, len(index), self.max_batch):
                chunk = index[k:k + self.max_batch]
                probs = self.backend.infer(np.stack([np.ascontiguousarray(inputs[i]) for i in chunk]))[:, 0]
                for i, p in zip(chunk, probs):
                    out[i] = self.postprocess(p, frames[i].shape[:2], binary)
        return out  # type: ignore[return-value]

    def segment_scored(self, frames: np.ndarray | Sequence[np.ndarray],
                       previous_mask: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Masks with their quality: for each frame {"mask" (uint8 0/1), "prob" (float32), "quality"
        (confidence, uncertain_fraction, area_px, dice_prev, flags: runtime/temporal.py)}. Frames
        are taken as consecutive frames of one stream ("jump" compares each with the one before,
        the first with `previous_mask`); for smoothing across calls use temporal.StreamQuality."""
        from llm4seg.runtime.temporal import frame_quality

        results, last = [], previous_mask
        for prob in self.segment(frames, binary=False):
            quality = frame_quality(prob, self.threshold, last, self.low_confidence)
            mask = (prob > self.threshold).astype(np.uint8)
            results.append({"mask": mask, "prob": prob, "quality": quality})
            last = mask
        return results

    def segment_one(self, frame: np.ndarray, binary: bool = True) -> np.ndarray:
        """One frame -> its mask (or probabilities) at its size."""
        return self.segment([frame], binary)[0]


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
