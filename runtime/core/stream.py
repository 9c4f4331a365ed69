"""One stream of frames through the frame runtime: a frame runner, then this stream's mask stage.

    runner = load_runner("ART/model.onnx")            # or model.frames.onnx, grpc://HOST:8001/segment
    stream = SegmentStream(runner, MaskStage.for_entry(runner.entry.threshold, runner.entry.quality))
    for result in stream.process(frames):             # FrameResult: mask, prob, confidence, flags, area
        ...

Every door holds one per stream (VideoPipeline, Holoscan's SegmentOp, Triton's `segment` per
request, dicom-listen per instance, `Segmenter.segment_scored` per call, `Segmenter.stream` across
calls), so a frame gets one answer whichever door it came through.
"""

from __future__ import annotations

from typing import Any

from llm4seg.geometry import FrameGeometry
from llm4seg.mask_stage import FrameResult, MaskStage
from llm4seg.runtime.core.runner import FrameRunner, frame_list
from llm4seg.smoothing import Smoother


class SegmentStream:
    """A runner and one stream's mask stage (see the module).

    Args:
        runner: the frame runner (shared between streams is fine: it is thread-safe).
        stage: this stream's MaskStage (not shared: it holds the stream's past).
    """

    def __init__(self, runner: FrameRunner, stage: MaskStage) -> None:
        self.runner, self.stage = runner, stage

    @classmethod
    def of(cls, runner: FrameRunner, smoother: Smoother | None = None,
           geometry: FrameGeometry | None = None) -> "SegmentStream":
        """A new stream of `runner` under its entry's threshold and calibrated low-confidence bound."""
        entry = runner.entry
        return cls(runner, MaskStage.for_entry(entry.threshold, entry.quality, smoother, geometry))

    def process(self, frames: Any, indices: list[int] | None = None) -> list[FrameResult]:
        """Consecutive frames of this stream -> their results, in order (one inference call per
        batch of the runner's range; the stage in frame order). `indices`: the frames' indices in
        the source (default: counting on from the last)."""
        frames = frame_list(frames)
        rgbs = [self.runner.rgb(f) for f in frames]
        probs = self.runner.probs_of_rgb(rgbs) if rgbs else []
        results = []
        for i, (prob, rgb) in enumerate(zip(probs, rgbs)):
            index = None if indices is None else indices[i]
            results.append(self.stage.step(prob, rgb if self.stage.wants_image else None, index))
        return results

    def unreadable(self, index: int | None = None) -> FrameResult:
        """Record a frame that could not be read (no mask, flagged `unreadable`)."""
        return self.stage.unreadable(index)

    def summary(self) -> dict[str, Any]:
        """The stream's flicker, confidence, flags and areas (the stage's summary)."""
        return self.stage.summary()


__all__ = ["SegmentStream"]
