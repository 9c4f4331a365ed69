"""Holoscan operators around the frame runtime, and the example application that wires them.

Module-level classes with declared parameters, as Holoscan's own operators are. This module
imports Holoscan, so it is imported only when one of its classes is used
(`llm4seg.runtime.doors.holoscan.SegmentOp` loads it on first use): `import llm4seg.runtime`
never pulls Holoscan in.

- `FrameSourceOp`: a video source (file, camera, stream, gst:, DICOM) -> {"frame", "index",
  "pts_s", "geometry"} messages.
- `SegmentOp`: the frame runner and one stream's mask stage (llm4seg.mask_stage) -> "mask",
  "result" (confidence, flags, area) and "overlay" added to each message.
- `VideoSinkOp`: overlaid frames to a file or GStreamer pipeline.
- `SegmentApp`: source -> segment -> sink from a YAML file (`app.run_app`).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.runtime.doors.holoscan.sdk import holoscan_module

holoscan_module()  # Holoscan imported with its log level set and its stack-size warning (for CUDA operators) quiet
from holoscan.core import Application, Operator  # noqa: E402

from llm4seg.errors import ConfigError
from llm4seg.runtime.core.overlay import overlay
from llm4seg.runtime.core.segmenter import Segmenter
from llm4seg.runtime.doors.video.sinks import open_sink
from llm4seg.runtime.doors.video.sources import open_source


def _kept(method: Any) -> Any:
    """Wrap an operator's compute/stop so its exception is kept on the operator (`errors`) before
    Holoscan sees it: Holoscan logs an exception in stop() and goes on, so run_app raises it after."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return method(self, *args)
        except Exception as exc:
            self.__dict__.setdefault("errors", []).append(exc)
            raise
    return wrapper


class FrameSourceOp(Operator):
    """Emits {"frame": BGR uint8 (None for an unreadable frame), "index", "pts_s", "geometry" (the
    source's FrameGeometry: a DICOM file's tissue region and pixel size, else None)} per frame of a
    video source (see `open_source`), then stops the graph at the end of the source."""

    def __init__(self, fragment: Any, *args: Any, source: Any = None, reader: str = "auto", **kwargs: Any) -> None:
        self.cap, self.live = open_source(source, reader)
        self.index, self.compute_ms = 0, []
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: Any) -> None:
        """One output port, `out`."""
        spec.output("out")

    @_kept
    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        """Read the next frame and emit it; at the end of the source, stop the graph."""
        t0 = time.perf_counter()
        ok, image = self.cap.read()
        if not ok:
            self.stop_execution()
            return
        readable = image is not None and image.size > 0
        op_output.emit({"frame": image if readable else None, "index": self.index, "pts_s": self.cap.last_pts_s,
                        "geometry": getattr(self.cap, "geometry", None)}, "out")
        self.index += 1
        self.compute_ms.append((time.perf_counter() - t0) * 1000)

    @_kept
    def stop(self) -> None:
        """Release the source."""
        self.cap.release()


class SegmentOp(Operator):
    """Segments each received frame through the frame runner and this operator's mask stage.

    Input port `in`: a BGR uint8 frame (H, W, 3), or a dict holding it under "frame" (other keys
    are passed on; a "geometry" FrameGeometry there, or `region=`, bounds the masks). Output port
    `out`: the dict with "mask" (uint8 0/1, the frame's size, cropped to the tissue region),
    "result" (llm4seg.mask_stage.FrameResult: confidence, flags, area in px and mm^2) and
    "overlay" (the frame with the mask drawn; dashed orange when flagged low_confidence) added.
    An unreadable frame (frame None) is recorded (flag `unreadable`) and not passed on.
    `stream.summary()` gives the run's flicker, confidence, flag counts and areas.

    Args:
        artifact: an exported artifact (.onnx, .plan, .pt2) or a served model's URL; or
        segmenter: a Segmenter made by the caller (then it is not closed by this operator).
        overlay_mode: 'contour', 'fill', or None for no overlay.
        smooth: temporal smoothing of the probabilities (none, ema[:ALPHA], median[:WINDOW], flow[:ALPHA]).
        region: the frames' FrameGeometry (default: the messages' "geometry", else none).
    """

    def __init__(self, fragment: Any, *args: Any, artifact: str | Path | None = None, segmenter: Any = None,
                 overlay_mode: str | None = "contour", smooth: str | None = None, region: Any = None,
                 **kwargs: Any) -> None:
        if (artifact is None) == (segmenter is None):
            raise ConfigError("SegmentOp needs one of artifact= or segmenter=",
                              hint="pass artifact='ART/model.onnx' (or a Segmenter)")
        self.owns = segmenter is None
        self.segmenter = Segmenter(artifact) if self.owns else segmenter
        self.overlay_mode, self.smooth, self.region, self.compute_ms = overlay_mode, smooth, region, []
        self.stream = self.segmenter.stream(smooth, region=region) if region is not None else None
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: Any) -> None:
        """Ports `in` and `out`."""
        spec.input("in")
        spec.output("out")

    @_kept
    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        """Segment the received frame through the runner and this operator's mask stage."""
        message = op_input.receive("in")
        item = dict(message) if isinstance(message, dict) else {"frame": np.asarray(message)}
        if self.stream is None:  # the first message says the stream's geometry
            self.stream = self.segmenter.stream(self.smooth, region=item.get("geometry"))
        index = item.get("index")
        if item["frame"] is None:
            self.stream.unreadable(index)
            return
        t0 = time.perf_counter()
        result = self.stream.process([item["frame"]], None if index is None else [index])[0]
        item["mask"], item["result"] = result.mask, result
        if self.overlay_mode:
            item["overlay"] = overlay(item["frame"], result.mask, self.overlay_mode,
                                      unsure="low_confidence" in result.flags)
        self.compute_ms.append((time.perf_counter() - t0) * 1000)
        op_output.emit(item, "out")

    @_kept
    def stop(self) -> None:
        """Close the Segmenter this operator made (not one the caller passed)."""
        if self.owns:
            self.segmenter.close()


class _SinkFrame:
    """The attributes a video sink reads (image, mask, unsure, index, pts_s) from a SegmentOp message."""

    def __init__(self, item: dict) -> None:
        self.image, self.mask = item["frame"], item["mask"]
        self.unsure = "low_confidence" in item["result"].flags if item.get("result") else False
        self.index, self.pts_s = item.get("index", 0), item.get("pts_s")


class VideoSinkOp(Operator):
    """Writes each received {"frame", "mask", ...} to a video file or GStreamer pipeline (see
    `open_sink`); keeps each message's FrameResult in `results` when `keep_results` (tests, small clips)."""

    def __init__(self, fragment: Any, *args: Any, out: str | None = None, fps: float = 25.0,
                 overlay_mode: str = "contour", keep_results: bool = False, **kwargs: Any) -> None:
        self.sink = open_sink(out, fps, overlay_mode) if out else None
        self.keep_results, self.results, self.compute_ms = keep_results, [], []
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: Any) -> None:
        """One input port, `in`."""
        spec.input("in")

    @_kept
    def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
        """Write the received frame (and keep its result when asked)."""
        item = op_input.receive("in")
        t0 = time.perf_counter()
        if self.sink is not None:
            self.sink(_SinkFrame(item))
        if self.keep_results:
            self.results.append(item["result"])
        self.compute_ms.append((time.perf_counter() - t0) * 1000)

    @_kept
    def stop(self) -> None:
        """Close the sink."""
        if self.sink is not None:
            self.sink.close()


class SegmentApp(Application):
    """source -> segment -> sink, each operator's arguments from the YAML sections of the same
    names (`source`, `segment`, `sink`; `scheduler` picks greedy or multi_thread)."""

    def compose(self) -> None:
        """Wire source -> segment -> sink from the YAML's sections."""
        self.source_op = FrameSourceOp(self, name="source", **dict(self.kwargs("source")))
        self.segment_op = SegmentOp(self, name="segment", **dict(self.kwargs("segment")))
        sink_args = dict(self.kwargs("sink"))
        sink_args.setdefault("fps", self.source_op.cap.fps or 25.0)
        self.sink_op = VideoSinkOp(self, name="sink", **sink_args)
        self.add_flow(self.source_op, self.segment_op)
        self.add_flow(self.segment_op, self.sink_op)


__all__ = ["FrameSourceOp", "SegmentApp", "SegmentOp", "VideoSinkOp"]
