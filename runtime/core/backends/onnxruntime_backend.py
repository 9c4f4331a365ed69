"""onnxruntime backend: CPU everywhere, CUDA where onnxruntime-gpu and a GPU are present."""

from __future__ import annotations

from typing import Any

import numpy as np

from llm4seg.errors import BackendUnavailableError
from llm4seg.runtime.core.backends.base import Backend


class OnnxRuntimeBackend(Backend):
    """An ONNX graph in onnxruntime (CPU, or CUDA with onnxruntime-gpu); `low_memory` turns the CPU
    arena off. Thread-safe: onnxruntime sessions take concurrent calls."""
    name = "onnxruntime"

    def __init__(self, artifact, manifest: Any = None, threads: int | None = None,
                 device: str = "auto", low_memory: bool = False) -> None:
        super().__init__(artifact, manifest)
        # low_memory: no CPU arena and no memory-pattern planning; about 100 MB less peak RSS
        # for the LLaMA-1B-shaped INT8 graph, at some latency cost (benchmarks/RESULTS.md).
        self.threads, self.device, self.low_memory = threads, device, low_memory

    def providers(self) -> list[str]:
        """The execution providers a session for `device` gets (CUDA first where asked for and
        available), or an error when CUDA is asked for and onnxruntime has none."""
        import onnxruntime as ort

        available = ort.get_available_providers()
        if self.device == "cuda" and "CUDAExecutionProvider" not in available:
            raise BackendUnavailableError("onnxruntime has no CUDA provider here",
                                          hint="pip install onnxruntime-gpu on a CUDA machine, or use device='cpu'")
        if self.device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        if self.low_memory:
            opts.enable_cpu_mem_arena = False
            opts.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(str(self.artifact), opts, providers=self.providers())
        except Exception as exc:  # onnxruntime raises its own pybind error types
            raise BackendUnavailableError(f"onnxruntime cannot load {self.artifact} ({type(exc).__name__}: {exc})",
                                          hint="the file is not a valid ONNX graph for this onnxruntime; "
                                          "re-run `llm4seg export`") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def _infer(self, image: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: image})[0]

    def _close(self) -> None:
        del self.session
