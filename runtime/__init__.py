"""llm4seg.runtime: run exported LLM4Seg artifacts in video pipelines.

Imports only numpy, opencv, onnxruntime (and tensorrt when chosen): never torch or
transformers at module top, so it embeds in lean inference processes.

    from llm4seg.runtime import Segmenter
    with Segmenter("artifacts/model.onnx") as seg:
        mask = seg.segment_one(frame_bgr)
"""

from __future__ import annotations

from llm4seg.runtime.backends import BACKENDS, Backend, load_backend
from llm4seg.runtime.manifest import load_manifest
from llm4seg.runtime.segmenter import Segmenter, overlay
from llm4seg.runtime.video import VideoPipeline, VideoWriterSink

__all__ = ["BACKENDS", "Backend", "Segmenter", "VideoPipeline", "VideoWriterSink", "load_backend", "load_manifest", "overlay"]
