"""torch backend: runs `model.pt2`, the export's torch.export program (imported only when chosen).

It needs torch alone: no llm4seg model, checkpoint, training or export code (the runtime's
one-way door); the program's sha256 is checked against the manifest, and its archive is read
for pickled payloads (pt2_safety.py) before torch.export.load sees it. On CUDA: FP16 autocast (matmuls and convs
in FP16, norms and softmax in FP32), channels_last, cuDNN autotuning, and an optional CUDA graph
per batch size. On CPU: the program in FP32. `compile=` adds a cached compiled form
(torch_compile.py): True or 'aoti' (AOTInductor package), 'inductor' (torch.compile).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llm4seg._optional import require
from llm4seg.errors import BackendUnavailableError
from llm4seg.runtime.core.backends.base import Backend


class TorchBackend(Backend):
    """A `model.pt2` (torch.export program, checked before loading), optionally compiled (AOTInductor
    package or Inductor, cached per key); on a GPU FP16 autocast, channels_last, CUDA graphs.
    Calls run one at a time (shared buffers)."""
    name = "torch"
    serialize_infer = True  # pinned buffers, CUDA graphs and the compiled runner are shared

    def __init__(self, artifact, manifest: Any = None, device: str = "auto",
                 half: bool | None = None, cuda_graph: bool = False, channels_last: bool | None = None,
                 compile: bool | str = False, overlap_chunk: int | None = None) -> None:  # noqa: A002
        """Args:
            compile: False, True or 'aoti' (AOTInductor package), 'inductor' (torch.compile).
            overlap_chunk: on CUDA, batches larger than this go through in chunks of this many
                frames whose host copies overlap compute (torch_overlap.py); None: one copy each way.
        """
        from llm4seg.errors import ConfigError
        from llm4seg.runtime.core.backends.torch_compile import check_compiler

        if overlap_chunk is not None and (not isinstance(overlap_chunk, int) or overlap_chunk < 1):
            raise ConfigError(f"overlap_chunk={overlap_chunk!r} must be a whole number of frames, at least 1",
                              hint="e.g. overlap_chunk=64, or None for one copy each way")
        super().__init__(artifact, manifest)
        self.overlap_chunk = overlap_chunk
        self.device_name, self.half_opt, self.cuda_graph = device, half, cuda_graph
        self.compiler = check_compiler(compile)  # refused here, before any loading
        self.compile_info: dict[str, Any] | None = None
        self._autocast = False
        self.channels_last_opt = channels_last
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}
        self._pinned: dict[int, tuple[Any, Any]] = {}
        self._copy_streams: tuple[Any, Any] | None = None

    def _load(self) -> None:
        torch = self.torch = require("torch", "the torch backend")
        use_cuda = self.device_name in ("auto", "cuda") and torch.cuda.is_available()
        if self.device_name == "cuda" and not use_cuda:
            raise BackendUnavailableError("device='cuda' but torch sees no CUDA device", hint="use device='cpu' or 'auto'")
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.half = use_cuda if self.half_opt is None else self.half_opt
        self.memory_format = torch.contiguous_format
        if self.compiler != "aoti" and (use_cuda if self.channels_last_opt is None else self.channels_last_opt):
            # cuDNN's NHWC kernels are the fast ones for these depthwise and grouped convs (an
            # AOTInductor package is built for NCHW inputs and picks its inner layouts itself).
            self.memory_format = torch.channels_last
        if use_cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes per batch size: tune once
        self._autocast = self.half and self.compiler != "aoti"  # the package has autocast traced in
        if self.compiler:
            self._compile()
        else:
            self.model = self._program_module()

    def _program_module(self) -> Any:
        """The program as a module on the device, ready for autocast."""
        from llm4seg.runtime.core.backends.torch_compile import without_dtype_asserts

        from llm4seg.runtime.core.backends.pt2_safety import check_pt2_archive

        torch = self.torch
        check_pt2_archive(self.artifact)  # no pickled payload that could run code reaches torch.export.load
        try:
            program = torch.export.load(str(self.artifact))
        except Exception as exc:  # torch raises many types for foreign or damaged archives
            raise BackendUnavailableError(f"torch cannot load {self.artifact} ({type(exc).__name__}: {exc})",
                                          hint="re-export it with this torch version (`llm4seg export --pt2`)") from exc
        return without_dtype_asserts(torch, program.module().to(self.device))

    def _compile(self) -> None:
        from llm4seg.runtime.core.backends import torch_compile

        torch, sha256 = self.torch, self.entry.sha256
        batch = dict(zip(("min", "opt", "max"), self.entry.batch))  # the compile cache's key names them
        if self.compiler == "aoti":
            # A cached package is loaded without reading the program at all (the fast warm start).
            self.model, self.compile_info = torch_compile.aoti_model(
                torch, self._program_module, sha256, self.device, self.half, batch, self.input_spec()["shape"][1:])
        else:
            layout = "channels_last" if self.memory_format is torch.channels_last else "nchw"
            self.model, self.compile_info = torch_compile.inductor_model(torch, self._program_module(), sha256,
                                                                         self.device, self.half, batch, layout)
            self.cuda_graph = False  # on GPUs reduce-overhead replays CUDA graphs itself
        self.compile_key = self.compile_info["key"]

    def _forward(self, x):
        with self.torch.autocast(self.device.type, dtype=self.torch.float16, enabled=self._autocast):
            return self.model(x).float()

    def infer_tensor(self, image: Any) -> Any:
        """For pipelines that already hold frames on the device: a torch tensor (or any DLPack
        tensor) float32 (N, C, S, S), normalised, on this backend's device -> probabilities
        (N, 1, S, S) float32 there, with no host copy either way."""
        self.load()  # no-op once loaded
        torch = self.torch
        x = image if isinstance(image, torch.Tensor) else torch.from_dlpack(image)
        spec = self.input_spec()
        expected = f"(N, {', '.join(str(d) for d in spec['shape'][1:])}) float32 on {self.device}"
        lo, hi = spec["batch"]
        if (x.dtype != torch.float32 or x.dim() != 4 or list(x.shape[1:]) != list(spec["shape"][1:])
                or x.device.type != self.device.type or not lo <= x.shape[0] <= hi):
            from llm4seg.errors import InputSpecError

            raise InputSpecError(f"input 'image' is {tuple(x.shape)} {x.dtype} on {x.device}, expected {expected}, "
                                 f"{lo} <= N <= {hi}", hint="normalise and resize as the manifest says, on this device")
        with torch.inference_mode():
            out = self._run(x.contiguous(memory_format=self.memory_format))
            # A CUDA graph's output buffer is overwritten by the next replay: hand out a copy.
            return out.clone() if self.cuda_graph and self.device.type == "cuda" else out

    def _infer(self, image: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            if self.device.type == "cuda":
                return self._infer_cuda(image)
            x = torch.from_numpy(image).contiguous(memory_format=self.memory_format)
            return self._run(x).numpy()

    def _infer_cuda(self, image: np.ndarray) -> np.ndarray:
        """Through pinned host buffers reused per batch size, so both copies are asynchronous DMA.
        GPU-only: exercised by benchmarks/gpu/gpu_runtime.py on a device, not by the CPU tests."""
        from llm4seg.runtime.core.backends import torch_overlap

        if self.overlap_chunk and image.shape[0] > self.overlap_chunk:
            return torch_overlap.infer_overlapped(self, image, self.overlap_chunk)
        torch = self.torch
        host_in, host_out = torch_overlap.pinned_pair(self, image.shape)
        host_in.numpy()[...] = image
        x = host_in.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        host_out.copy_(self._run(x), non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return host_out.numpy().copy()

    def _run(self, x):
        """Device tensor in, device tensor out; a CUDA graph per batch size when asked."""
        torch = self.torch
        if not (self.cuda_graph and self.device.type == "cuda"):
            return self._forward(x)
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
        return static_out

    def _close(self) -> None:
        self._graphs.clear()
        self._pinned.clear()
        self._copy_streams = None
        del self.model
