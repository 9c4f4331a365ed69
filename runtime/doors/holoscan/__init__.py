"""NVIDIA Holoscan: operators around the frame runtime, an example application, and the
configuration of Holoscan's own GPU operators for an export.

    from llm4seg.runtime.doors.holoscan import SegmentOp      # frames in, mask + result + overlay out
    python -m llm4seg.runtime.doors.holoscan app.yaml [--json]

`SegmentOp` runs any artifact the runtime runs (ONNX on the CPU, TensorRT plans and .pt2 on a GPU,
a served `segment`) with one stream's mask stage. `SegmentApp` wires source -> SegmentOp -> sink
from YAML (`segment_app.yaml` beside this module is the example); `run_app` returns the run's
report with Holoscan's data-flow-tracked latency. Holoscan is optional (`pip install
'llm4seg[holoscan]'`): the operator classes (operators.py) are loaded on first use.
`inference_op_config` writes FormatConverterOp + InferenceOp's configuration for GPU deployments
(NOT RUN here: no GPU).
"""

from __future__ import annotations

from typing import Any

from llm4seg.runtime.doors.holoscan.app import EXAMPLE_CONFIG, check_app_config, main, run_app
from llm4seg.runtime.doors.holoscan.gpu_config import inference_op_config

OPERATORS = ("FrameSourceOp", "SegmentApp", "SegmentOp", "VideoSinkOp")


def __getattr__(name: str) -> Any:
    """The operator classes, with Holoscan imported, on first use."""
    if name in OPERATORS:
        from llm4seg.runtime.doors.holoscan import operators

        return getattr(operators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EXAMPLE_CONFIG", "OPERATORS", "check_app_config", "inference_op_config", "main", "run_app"]
