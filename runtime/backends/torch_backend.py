"""torch backend: a checkpoint folder run directly (imported only when chosen).

On CUDA: the folded deployment graph (BN folded into convs, the LLM layer folded as in the ONNX
export; `folded=False` runs the training graph), FP16 weights and activations (norm statistics
and softmax stay FP32), channels_last memory layout with cuDNN's autotuner, and an optional CUDA
graph per batch size. On CPU by default: the checkpoint's own graph in eager FP32, the authors' way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llm4seg._optional import require
from llm4seg.runtime.backends.base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, artifact, manifest: dict[str, Any] | None = None, device: str = "auto",
                 half: bool | None = None, cuda_graph: bool = False, channels_last: bool | None = None,
                 folded: bool | None = None) -> None:
        super().__init__(artifact, manifest)
        self.device_name, self.half_opt, self.cuda_graph = device, half, cuda_graph
        self.channels_last_opt, self.folded_opt = channels_last, folded
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}

    def _load(self) -> None:
        torch = self.torch = require("torch", "the torch backend")
        from llm4seg.checkpoint import load_checkpoint

        use_cuda = self.device_name in ("auto", "cuda") and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.half = use_cuda if self.half_opt is None else self.half_opt
        self.folded = use_cuda if self.folded_opt is None else self.folded_opt
        self.model = self._build(load_checkpoint(self.artifact))
        self.dtype = torch.float16 if self.half and not self.folded else torch.float32
        self.memory_format = torch.contiguous_format
        if use_cuda if self.channels_last_opt is None else self.channels_last_opt:
            # cuDNN's NHWC kernels are the fast ones for these depthwise and grouped convs.
            self.memory_format = torch.channels_last
            self.model.to(memory_format=self.memory_format)
        if use_cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes per batch size: tune once

    def _build(self, model):
        if self.folded:
            from llm4seg.export.deploy import DeployNet  # ends in a sigmoid; FP16 inside when half

            return DeployNet(model, half=self.half).to(self.device)
        model = model.to(self.device)
        return model.half() if self.half else model

    def _forward(self, x):
        if self.folded:
            return self.model(x)
        return self.torch.sigmoid(self.model(x).float())

    def _infer(self, image: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(image).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
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
