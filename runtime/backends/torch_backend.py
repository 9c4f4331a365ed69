"""torch backend: runs `model.pt2`, the export's torch.export program (imported only when chosen).

It needs torch alone: no llm4seg model, checkpoint, training or export code (the runtime's
one-way door); the program's sha256 is checked against the manifest before it is loaded, since
torch.export.load may unpickle parts of the archive. On CUDA: FP16 autocast (matmuls and convs
in FP16, norms and softmax in FP32), channels_last, cuDNN autotuning, and an optional CUDA graph
per batch size. On CPU: the program in FP32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llm4seg._optional import require
from llm4seg.errors import BackendUnavailableError
from llm4seg.runtime.backends.base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, artifact, manifest: dict[str, Any] | None = None, device: str = "auto",
                 half: bool | None = None, cuda_graph: bool = False, channels_last: bool | None = None) -> None:
        super().__init__(artifact, manifest)
        self.device_name, self.half_opt, self.cuda_graph = device, half, cuda_graph
        self.channels_last_opt = channels_last
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}

    def _load(self) -> None:
        torch = self.torch = require("torch", "the torch backend")
        use_cuda = self.device_name in ("auto", "cuda") and torch.cuda.is_available()
        if self.device_name == "cuda" and not use_cuda:
            raise BackendUnavailableError("device='cuda' but torch sees no CUDA device", hint="use device='cpu' or 'auto'")
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.half = use_cuda if self.half_opt is None else self.half_opt
        try:
            program = torch.export.load(str(self.artifact))
        except Exception as exc:  # torch raises many types for foreign or damaged archives
            raise BackendUnavailableError(f"torch cannot load {self.artifact} ({type(exc).__name__}: {exc})",
                                          hint="re-export it with this torch version (`llm4seg export --pt2`)") from exc
        self.model = program.module().to(self.device)
        self.memory_format = torch.contiguous_format
        if use_cuda if self.channels_last_opt is None else self.channels_last_opt:
            # cuDNN's NHWC kernels are the fast ones for these depthwise and grouped convs.
            self.memory_format = torch.channels_last
        if use_cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes per batch size: tune once

    def _forward(self, x):
        with self.torch.autocast(self.device.type, dtype=self.torch.float16, enabled=self.half):
            return self.model(x).float()

    def _infer(self, image: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(image).to(self.device).contiguous(memory_format=self.memory_format)
            if not (self.cuda_graph and self.device.type == "cuda"):
                return self._forward(x).cpu().numpy()
            n = x.shape[0]
            if n not in self._graphs:
                static_in = x.clone()
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(3):  # warm-up on a side stream before capture
                        self._forward(static_in)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_out = self._forward(static_in)
                self._graphs[n] = (graph, static_in, static_out)
            graph, static_in, static_out = self._graphs[n]
            static_in.copy_(x)
            graph.replay()
            return static_out.cpu().numpy()

    def _close(self) -> None:
        self._graphs.clear()
        del self.model
