"""llm4seg.runtime: run exported LLM4Seg artifacts in video pipelines.

Imports only numpy, opencv, onnxruntime (and tensorrt when chosen): never torch or
transformers at module top, so it embeds in lean inference processes.
"""

from __future__ import annotations

__all__: list[str] = []
