"""Strict stand-ins for `tensorrt` (TensorRT 10/11 API surface) and `cuda.bindings.runtime`.

They expose only the names our code may use (none of the removed ones: build_engine,
max_workspace_size, execute_async_v2, bindings, BuilderFlag.FP16/INT8 under TRT 11) and record
what they were asked. The "plan" they build carries the ONNX bytes, and the fake execution
context runs that graph in onnxruntime on the fake device memory (host memory at real
addresses), honouring set_tensor_address, set_input_shape, stream capture and graph replay.
So the code around TensorRT (flags, profile, workspace, timing and engine caches, tensor
addresses, pinned copies, CUDA-graph capture) runs where TensorRT cannot be installed. It proves
our calls, not TensorRT's behaviour; the real tests run where `tensorrt` imports.
"""

from __future__ import annotations

import ctypes
import enum
import types

import numpy as np

PLAN_MAGIC = b"FAKEPLAN\n"


class _HostMemory(bytes):
    pass


class _TimingCache:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def serialize(self) -> _HostMemory:
        return _HostMemory(self.blob + b"+timed")


class _Tensor:
    def __init__(self, name: str) -> None:
        self.name = name


class _Network:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs = [_Tensor("image")]

    def get_input(self, index: int) -> _Tensor:
        return self.inputs[index]


class _Profile:
    def __init__(self) -> None:
        self.shapes = {}

    def set_shape(self, name: str, min, opt, max) -> None:  # noqa: A002 (TensorRT's parameter names)
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class _Config:
    def __init__(self) -> None:
        self.pool_limits, self.profiles, self.timing_cache = {}, [], None

    def set_memory_pool_limit(self, pool, size: int) -> None:
        self.pool_limits[pool] = size

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, blob: bytes) -> _TimingCache:
        return _TimingCache(bytes(blob))

    def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> _TimingCache:
        return self.timing_cache


def make_module(version: str = "10.13.0", strongly_typed_flag: bool = True, parse_ok: bool = True,
                build_ok: bool = True) -> types.ModuleType:
    """A fresh fake module; `calls` on it records each build's network, config and ONNX path."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    members = {"STRONGLY_TYPED": 1} if strongly_typed_flag else {"PLACEHOLDER": 0}  # TRT 11 may drop the flag
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", members)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            self.severity = severity

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> _Network:
            return _Network(flags)

        def create_builder_config(self) -> _Config:
            return _Config()

        def create_optimization_profile(self) -> _Profile:
            return _Profile()

        def build_serialized_network(self, network: _Network, config: _Config):
            trt.calls.append({"flags": network.flags, "config": config})
            with open(trt.parsed, "rb") as f:
                return _HostMemory(PLAN_MAGIC + f.read()) if build_ok else None

    class OnnxParser:
        def __init__(self, network: _Network, logger: Logger) -> None:
            self.num_errors = 0 if parse_ok else 1

        def parse_from_file(self, path: str) -> bool:
            trt.parsed = path
            return parse_ok

        def get_error(self, index: int) -> str:
            return "In node 3 (Attention): unsupported operator"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    trt.Runtime = _runtime_class(trt)
    return trt


# -- runtime side -------------------------------------------------------------------------------

class _Device:
    """Fake device memory (host buffers at real addresses), streams and stream capture."""

    def __init__(self) -> None:
        self.buffers, self.capturing, self.calls = {}, set(), []

    def alloc(self, nbytes: int) -> int:
        buf = ctypes.create_string_buffer(nbytes)
        self.buffers[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def array(self, address: int, shape) -> np.ndarray:
        count = int(np.prod(shape))
        return np.ctypeslib.as_array((ctypes.c_float * count).from_address(address)).reshape(shape)


def _runtime_class(trt):
    import onnxruntime as ort

    class Context:
        def __init__(self, session, device: _Device) -> None:
            self.session, self.device, self.addresses, self.shape, self.ready = session, device, {}, None, False

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = address
            return True

        def set_input_shape(self, name: str, shape) -> bool:
            if tuple(shape) != self.shape:
                self.shape, self.ready = tuple(shape), False  # TensorRT's setup after a shape change
            return True

        def execute_async_v3(self, stream: int) -> bool:
            device = self.device
            if stream in device.capturing:
                if not self.ready:
                    raise AssertionError("captured before any enqueue at this shape")
                device.captured.append(self._compute)
            else:
                self._compute()
                self.ready = True
            device.calls.append("execute_async_v3")
            return True

        def _compute(self) -> None:
            shape = self.shape
            x = self.device.array(self.addresses["image"], shape).copy()
            y = self.session.run(["prob"], {"image": x})[0]
            self.device.array(self.addresses["prob"], y.shape)[...] = y

    class Engine:
        num_io_tensors = 2

        def __init__(self, session, device) -> None:
            self.session, self.device = session, device

        def get_tensor_name(self, index: int) -> str:
            return ("prob", "image")[index]  # outputs first: the backend must ask for the mode

        def get_tensor_mode(self, name: str):
            return trt.TensorIOMode.INPUT if name == "image" else trt.TensorIOMode.OUTPUT

        def create_execution_context(self) -> Context:
            return Context(self.session, self.device)

    class Runtime:
        def __init__(self, logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, blob: bytes):
            if not blob.startswith(PLAN_MAGIC):
                return None
            return Engine(ort.InferenceSession(blob[len(PLAN_MAGIC):], providers=["CPUExecutionProvider"]),
                          trt.device)

    trt.device = _Device()
    return Runtime


def make_cudart(device: _Device) -> types.ModuleType:
    """`cuda.bindings.runtime` on the fake device: every call returns (error, *values)."""
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaMemcpyKind = enum.IntEnum("cudaMemcpyKind", {"cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2})
    rt.cudaStreamCaptureMode = enum.IntEnum("cudaStreamCaptureMode", {
        "cudaStreamCaptureModeGlobal": 0, "cudaStreamCaptureModeThreadLocal": 1, "cudaStreamCaptureModeRelaxed": 2})
    ok = (0,)
    streams = iter(range(100, 10_000))

    def memcpy_async(dst, src, nbytes, kind, stream):
        if stream in device.capturing:
            raise AssertionError("copies stay outside the captured graph")
        ctypes.memmove(int(dst), int(src), nbytes)
        return ok

    def begin_capture(stream, mode):
        device.capturing.add(stream)
        device.captured = []
        device.calls.append(f"capture:{rt.cudaStreamCaptureMode(mode).name}")
        return ok

    def end_capture(stream):
        device.capturing.discard(stream)
        return 0, list(device.captured)

    def launch(graph, stream):
        device.calls.append("graph_launch")
        for step in graph:
            step()
        return ok

    rt.cudaStreamCreate = lambda: (0, next(streams))
    rt.cudaStreamDestroy = lambda stream: ok
    rt.cudaStreamSynchronize = lambda stream: ok
    rt.cudaMalloc = lambda nbytes: (0, device.alloc(nbytes))
    rt.cudaMallocHost = lambda nbytes: (0, device.alloc(nbytes))
    rt.cudaFree = rt.cudaFreeHost = lambda address: ok
    rt.cudaMemcpyAsync = memcpy_async
    rt.cudaStreamBeginCapture, rt.cudaStreamEndCapture = begin_capture, end_capture
    rt.cudaGraphInstantiate = lambda graph, flags: (0, graph)
    rt.cudaGraphLaunch = launch
    rt.cudaGraphExecDestroy = lambda graph: ok
    return rt
