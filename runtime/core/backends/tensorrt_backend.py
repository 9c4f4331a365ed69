"""TensorRT backend (TensorRT 10/11 API): set_tensor_address + execute_async_v3 on one stream.

Memory and streams through cuda-python (`cuda.bindings.runtime`). Inputs and outputs pass
through pinned host buffers, so the copies are truly asynchronous; an optional CUDA graph replays
the enqueue per batch size, captured after one plain enqueue at that shape (TensorRT finishes
shape-dependent setup in the first enqueue after a shape change). The engine's key
(GPU, compute capability, TensorRT version, ONNX digest, precision, profile) is checked against
this machine before anything runs: a mismatched engine is refused, never run.
NOT RUN on the development machines (no TensorRT or GPU there).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from llm4seg._optional import require
from llm4seg.errors import BackendUnavailableError
from llm4seg.runtime.core.backends.base import Backend
from llm4seg.runtime.core.backends.engine_key import MODULE_FOR_PRODUCT


def _check(result: Any) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailableError(f"CUDA call failed with error {err}", hint="check the GPU and driver")
    return rest[0] if len(rest) == 1 else rest


class TensorRTBackend(Backend):
    """A TensorRT (or TensorRT-RTX) engine: set_tensor_address + execute_async_v3 on a CUDA stream,
    cuda-python buffers, an optional CUDA graph. Refuses an engine whose key does not match this
    device. Needs a GPU with tensorrt and cuda-python installed."""
    name = "tensorrt"
    serialize_infer = True  # one set of device/pinned buffers, one stream and context: one call at a time

    def __init__(self, artifact, manifest: Any = None, cuda_graph: bool = False) -> None:
        super().__init__(artifact, manifest)
        self.cuda_graph = cuda_graph
        self._graphs: dict[int, Any] = {}

    def _verify_engine_key(self, trt) -> None:
        from llm4seg.runtime.core.backends.engine_key import ANY_GPU, EngineKey, gpu_identity, mismatches

        recorded = self.entry.optional("engine")
        if not recorded:
            raise BackendUnavailableError(f"{self.artifact.name} has no engine key in its manifest",
                                          hint="rebuild it with `llm4seg export CKPT --build-engines`, or add a trtexec-built one with `llm4seg adopt-engine PLAN`")
        gpu, cc = gpu_identity()
        product = recorded.get("product", "TensorRT")
        if product == "TensorRT-RTX" and recorded.get("gpu_name") == ANY_GPU:
            gpu = ANY_GPU  # an RTX engine is built for a compute capability, not for one card
        current = EngineKey(self._source_digest(recorded), trt.__version__, gpu, cc, self.entry.precision,
                            self._profile(), product)
        diffs = mismatches(recorded, current)
        if diffs:
            raise BackendUnavailableError(f"{self.artifact.name} was built for another machine: {'; '.join(diffs)}",
                                          hint="rebuild the engine here: llm4seg export CKPT --build-engines (engines are not portable)")

    def _source_digest(self, recorded: dict[str, Any]) -> str:
        """The ONNX graph's digest recomputed from the file beside the engine when it is there
        (the key's other fields come from this machine and this manifest entry, never the key)."""
        from llm4seg.runtime.core.manifest import artifact_sha256

        source = self.artifact.parent / (self.entry.optional("source_onnx") or "")
        return artifact_sha256(source) if self.entry.optional("source_onnx") and source.is_file() else recorded["onnx_sha256"]

    def _profile(self) -> tuple[tuple[int, ...], ...]:
        b, shape = self.entry.batch, self.entry.input.shape
        return tuple((n, *shape[1:]) for n in b)

    def _load(self) -> None:
        # TensorRT-RTX engines (built for a compute capability by `export --engine` anywhere) load
        # with TensorRT-RTX's own runtime; NOT RUN: no RTX GPU on the development machines.
        product = (self.entry.optional("engine") or {}).get("product", "TensorRT")
        if product == "TensorRT-RTX":
            self._rtx_gpu_or_explain()
        trt = require(MODULE_FOR_PRODUCT.get(product, "tensorrt"), f"the TensorRT backend ({product} engine)")
        self.cudart = require("cuda.bindings.runtime", "the TensorRT backend (cuda-python)")
        self._verify_engine_key(trt)
        self.logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(self.artifact.read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(f"TensorRT could not deserialize {self.artifact.name}",
                                          hint="rebuild the engine on this machine with `llm4seg export CKPT --build-engines`")
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.in_name, self.out_name = self._io_names(trt)
        max_batch = self.entry.max_batch
        size, ch = self.entry.image_size, self.entry.input.shape[1]
        self.in_bytes = max_batch * ch * size * size * 4
        self.out_bytes = max_batch * size * size * 4
        self.d_in = _check(self.cudart.cudaMalloc(self.in_bytes))
        self.d_out = _check(self.cudart.cudaMalloc(self.out_bytes))
        self.h_in = _check(self.cudart.cudaMallocHost(self.in_bytes))
        self.h_out = _check(self.cudart.cudaMallocHost(self.out_bytes))
        for name, address in ((self.in_name, self.d_in), (self.out_name, self.d_out)):
            if not self.context.set_tensor_address(name, int(address)):
                raise BackendUnavailableError(f"TensorRT refused the address of tensor {name!r} in {self.artifact.name}",
                                              hint="rebuild the engine with `llm4seg export CKPT --build-engines`")

    def _rtx_gpu_or_explain(self) -> None:
        """A TensorRT-RTX engine runs only on an RTX GPU of the compute capability it was built for:
        say so (not a pip hint) where this machine has no such GPU."""
        from llm4seg.runtime.core.backends.engine_key import gpu_identity

        cc = (self.entry.optional("engine") or {}).get("compute_capability", "?")
        try:
            gpu_identity()  # a GPU of another capability is named by the engine key check that follows
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(
                f"{self.artifact.name} is a TensorRT-RTX engine for compute capability {cc}: it runs only on an NVIDIA "
                f"RTX GPU of compute capability {cc}, and this machine has none ({exc.message})",
                hint=f"run it on such a GPU; here use {self._cpu_alternatives()} instead") from exc

    def _cpu_alternatives(self) -> str:
        """What in this export folder runs without a GPU: the engine's source graph and, where the
        export wrote one, its any-size frames graph (never a file the folder does not hold)."""
        from llm4seg.runtime.core.manifest import read_entries

        source = self.entry.optional("source_onnx")
        try:
            entries = read_entries(self.artifact.parent)
        except Exception:  # noqa: BLE001  (a hint must not fail: name the source graph alone)
            entries = {}
        frames = next((n for n, e in entries.items() if e.frames is not None and e.frames.form == "any-size"
                       and e.frames.source == source), None)
        return " or ".join(n for n in (source, frames) if n) or "the export's .onnx artifacts"

    def _io_names(self, trt) -> tuple[str, str]:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendUnavailableError(f"{self.artifact.name} has inputs {inputs} and outputs {outputs}, expected one of each",
                                          hint="build the engine from an llm4seg export (image -> prob)")
        return inputs[0], outputs[0]

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(int(self.stream)):
            raise BackendUnavailableError("TensorRT execute_async_v3 failed", hint="see the TensorRT log")

    def _run(self, batch: int) -> None:
        if not self.cuda_graph:
            self._enqueue()
        elif batch in self._graphs:
            _check(self.cudart.cudaGraphLaunch(self._graphs[batch], self.stream))
        else:  # first call at this batch: a plain enqueue (it serves this call), then capture for later
            cudart = self.cudart
            self._enqueue()
            _check(cudart.cudaStreamSynchronize(self.stream))
            # Thread-local: the video pipeline's other threads may touch CUDA meanwhile.
            _check(cudart.cudaStreamBeginCapture(self.stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
            self._enqueue()
            graph = _check(cudart.cudaStreamEndCapture(self.stream))
            self._graphs[batch] = _check(cudart.cudaGraphInstantiate(graph, 0))

    def _infer(self, image: np.ndarray) -> np.ndarray:
        cudart, n = self.cudart, image.shape[0]
        if not self.context.set_input_shape(self.in_name, image.shape):
            raise BackendUnavailableError(f"TensorRT refused input shape {image.shape}",
                                          hint="the engine's optimization profile does not cover it; rebuild with a wider --batch")
        out = np.empty((n, 1, *image.shape[2:]), np.float32)
        kind = cudart.cudaMemcpyKind
        ctypes.memmove(int(self.h_in), image.ctypes.data, image.nbytes)
        _check(cudart.cudaMemcpyAsync(self.d_in, self.h_in, image.nbytes, kind.cudaMemcpyHostToDevice, self.stream))
        self._run(n)
        _check(cudart.cudaMemcpyAsync(self.h_out, self.d_out, out.nbytes, kind.cudaMemcpyDeviceToHost, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        ctypes.memmove(out.ctypes.data, int(self.h_out), out.nbytes)
        return out

    def _close(self) -> None:
        for g in self._graphs.values():
            self.cudart.cudaGraphExecDestroy(g)
        self.cudart.cudaFree(self.d_in)
        self.cudart.cudaFree(self.d_out)
        self.cudart.cudaFreeHost(self.h_in)
        self.cudart.cudaFreeHost(self.h_out)
        self.cudart.cudaStreamDestroy(self.stream)
        del self.context, self.engine
