"""The frame runner, its one owner: frames in, probability maps at each frame's size out.

One protocol (`FrameRunner`), one implementation per way a model meets frames, chosen by what the
artifact declares (never by duck typing):
- `HostRunner`: a float graph (.onnx, .plan, .pt2, or a served tensor model): the frame contract
  (llm4seg/contract.py) runs on the host: resize, normalise, then the probabilities back to the
  frame's size;
- `GraphRunner`: a frames graph (uint8 frames in, the contract inside the graph);
- `ServedRunner`: a served `segment` (Triton): frames in the colour order its config declares.
Every runner first turns a frame into uint8 RGB by the contract (`rgb_from_frame`: layout, bit
depth, dtype) and then into the colour order its artifact takes (`image_in_color`): no runner has
a conversion of its own. `load_runner` picks one from a path or URL. The backends underneath are
tensors in, tensors out. Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from llm4seg.contract import FrameContract, check_layout, image_in_color, prob_at_size, rgb_from_frame
from llm4seg.errors import InputSpecError
from llm4seg.runtime.core.backends import Backend, load_backend
from llm4seg.runtime.core.entry import ManifestEntry


def frame_list(frames: Any) -> list[np.ndarray]:
    """One frame (a 2-D or 3-D array) or several (a 4-D array, a list or a tuple) as a list."""
    if not isinstance(frames, (np.ndarray, list, tuple)):
        raise InputSpecError(f"segment() takes a frame (an array) or a list of frames, got {type(frames).__name__}",
                             hint="pass the array OpenCV returns from VideoCapture.read(), or a list of them")
    return [frames] if isinstance(frames, np.ndarray) and frames.ndim in (2, 3) else list(frames)


class FrameRunner:
    """Frames of any size in `layout` -> float32 probabilities (H, W) at each frame's size.

    Args:
        backend: the artifact (or served model) behind the Backend interface.
        layout: the frames' channel order: 'bgr' (OpenCV's default), 'rgb' or 'gray'.
        bit_depth: for uint16 frames, the bits the device uses (12 for 0-4095); required for them.

    The lifecycle is the backend's: `load()` or enter it, `probs(frames)` any number of times (from
    several threads), `close()`.
    """

    kind = "base"

    def __init__(self, backend: Backend, layout: str = "bgr", bit_depth: int | None = None) -> None:
        check_layout(layout, bit_depth)
        self.backend, self.layout, self.bit_depth = backend, layout, bit_depth

    @property
    def entry(self) -> ManifestEntry:
        """The manifest entry the runner runs under."""
        return self.backend.entry

    @property
    def contract(self) -> FrameContract:
        """The frame contract of that entry."""
        return self.backend.entry.contract

    def load(self) -> "FrameRunner":
        """Load the backend (its artifact's sha256 checked first)."""
        self.backend.load()
        return self

    def close(self) -> None:
        """Close the backend (waits for calls in flight)."""
        self.backend.close()

    def __enter__(self) -> "FrameRunner":
        return self.load()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def rgb(self, frame: np.ndarray) -> np.ndarray:
        """One frame as uint8 (H, W, 3) RGB, by the contract."""
        return rgb_from_frame(frame, self.layout, self.bit_depth)

    def probs(self, frames: Any) -> list[np.ndarray]:
        """Frames -> probabilities at each frame's size, in order."""
        frames = frame_list(frames)
        return self.probs_of_rgb([self.rgb(f) for f in frames]) if frames else []

    def probs_of_rgb(self, rgbs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 RGB frames (from `rgb`) -> probabilities at each frame's size."""
        raise NotImplementedError

    def infer_inputs(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Inputs of one shape (what this runner makes of frames) -> the backend's first output per
        input, in chunks of the artifact's batch range."""
        top, out = self.entry.max_batch, []
        for i in range(0, len(inputs), top):
            out += list(self.backend.infer(np.stack(inputs[i:i + top]))[:, 0])
        return out


class HostRunner(FrameRunner):
    """A float graph: the contract on the host (resize, normalise; probabilities back to the frame)."""

    kind = "host"

    def tensor(self, rgb: np.ndarray) -> np.ndarray:
        """One RGB frame -> float32 (C, S, S) (or (S, S, C) for an NHWC graph), as training fed the model."""
        x = self.contract.tensor_from_image(self.contract.model_image(rgb))
        return x.transpose(1, 2, 0) if self.entry.input.layout == "NHWC" else x

    def probs_of_rgb(self, rgbs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """RGB frames -> tensors by the contract -> probabilities back at each frame's size."""
        probs = self.infer_inputs([self.tensor(r) for r in rgbs])
        return [self.contract.prob_at_size(p, r.shape[:2]) for p, r in zip(probs, rgbs)]


class GraphRunner(FrameRunner):
    """A frames graph: uint8 frames in its colour order (at the model's size for the model-size and
    nvinfer forms, resized by the contract as the SDK's own resize would), the rest inside."""

    kind = "graph"

    @property
    def input_color(self) -> str:
        """The colour order the graph's frames are in."""
        return self.entry.input_color

    def frame_input(self, rgb: np.ndarray) -> np.ndarray:
        """One RGB frame -> what the graph takes."""
        image = image_in_color(rgb, self.input_color)
        form = self.entry.frames.form if self.entry.frames else "any-size"
        if form == "any-size":
            return image
        resized = self.contract.resize_image(image)
        return resized.astype(np.float32).transpose(2, 0, 1) if form == "nvinfer" else resized

    def probs_of_rgb(self, rgbs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """RGB frames -> the graph's frames (those of one size in one batch) -> probabilities at each
        frame's size."""
        inputs = [self.frame_input(r) for r in rgbs]
        out: list[np.ndarray | None] = [None] * len(inputs)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(inputs):  # frames of one size share a batch
            by_shape.setdefault(x.shape, []).append(i)
        for index in by_shape.values():
            for i, p in zip(index, self.infer_inputs([inputs[i] for i in index])):
                out[i] = prob_at_size(p, rgbs[i].shape[:2], self.contract.mask_resize)
        return out  # type: ignore[return-value]


class ServedRunner(GraphRunner):
    """A served `segment` (Triton): frames of any size in the colour order its config declares
    (`llm4seg_io.color`), probabilities at each frame's size back."""

    kind = "served"

    @property
    def input_color(self) -> str:
        """The colour order the served model declares (`llm4seg_io.color` in its config)."""
        return self.backend.io["color"]

    def frame_input(self, rgb: np.ndarray) -> np.ndarray:
        """One RGB frame -> uint8 (H, W, 3) in the served colour order, at its own size."""
        return image_in_color(rgb, self.input_color)


def runner_for(backend: Backend, layout: str = "bgr", bit_depth: int | None = None) -> FrameRunner:
    """The runner of a backend, by what it declares: a served `segment`, a frames graph, or a float graph."""
    if backend.kind == "frames":
        return ServedRunner(backend, layout, bit_depth)
    cls = GraphRunner if backend.entry.frames is not None else HostRunner
    return cls(backend, layout, bit_depth)


def load_runner(artifact: Path | str | Backend, backend: str | None = None, layout: str = "bgr",
                bit_depth: int | None = None, **backend_options: Any) -> FrameRunner:
    """The frame runner for an artifact path (.onnx, .plan, .pt2), a served model's URL
    (grpc://HOST:8001/segment) or a Backend; constructed, not yet loaded.

    Args:
        backend: force a backend key (onnxruntime, tensorrt, torch, triton); default: by the artifact.
        layout, bit_depth: how the frames arrive (see FrameRunner).
        backend_options: passed to the backend (threads=, device=, compile=, timeout_s=, ...).
    """
    be = artifact if isinstance(artifact, Backend) else load_backend(artifact, backend, **backend_options)
    return runner_for(be, layout, bit_depth)


__all__ = ["FrameRunner", "GraphRunner", "HostRunner", "ServedRunner", "frame_list", "load_runner", "runner_for"]
