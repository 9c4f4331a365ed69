"""llm4seg.runtime: run exported LLM4Seg artifacts in video pipelines.

Imports only numpy, opencv, onnxruntime (and tensorrt when chosen): never torch or
transformers at module top, so it embeds in lean inference processes.

    from llm4seg.runtime import Segmenter
    with Segmenter("artifacts/model.onnx") as seg:
        mask = seg.segment_one(frame_bgr)

The tree: `core/` is the frame runtime (runner, stream, Segmenter, backends, manifest,
comparator); `doors/` are the ways frames reach it (video files and cameras, GStreamer, Holoscan,
DeepStream, Triton, DICOM); `tools/` are bench and adopt-engine.
"""

from __future__ import annotations

from llm4seg.geometry import FrameGeometry
from llm4seg.mask_stage import FrameResult, MaskStage
from llm4seg.runtime.core.backends import BACKENDS, Backend, load_backend
from llm4seg.runtime.core.manifest import ManifestEntry, load_manifest, read_entries
from llm4seg.runtime.core.overlay import overlay
from llm4seg.runtime.core.runner import FrameRunner, GraphRunner, HostRunner, ServedRunner, load_runner
from llm4seg.runtime.core.segmenter import Segmenter
from llm4seg.runtime.core.stream import SegmentStream
from llm4seg.runtime.doors.video.pipeline import VideoPipeline
from llm4seg.runtime.doors.video.sinks import VideoWriterSink

__all__ = ["BACKENDS", "Backend", "FrameGeometry", "FrameResult", "FrameRunner", "GraphRunner", "HostRunner",
           "ManifestEntry", "MaskStage", "SegmentStream", "Segmenter", "ServedRunner", "VideoPipeline",
           "VideoWriterSink", "load_backend", "load_manifest", "load_runner", "overlay", "read_entries"]
