"""Stand-ins for `tensorrt` (TensorRT 10/11 API surface) and `cuda.bindings.runtime`, with a real
NVIDIA parser and builder inside where TensorRT-RTX is installed (as in CI).

What is real: where `tensorrt_rtx_bindings` imports, `OnnxParser.parse_from_file` is TensorRT-RTX's
own ONNX parser (its errors verbatim), and `build_serialized_network` runs TensorRT-RTX's builder
for SM89 with the optimization profile our code set; a refusal of either is returned as TensorRT
returns it (False / None). Without TensorRT-RTX the parser only checks that the bytes are an ONNX
model (tests that need real refusals skip). It never calls llm4seg's own static check.

What is simulated (no GPU here): deserialising and running the engine. The "plan" carries the
profile, the I/O names and the ONNX bytes, and the fake execution context runs that graph in
onnxruntime on fake device memory (host buffers at real addresses). Strict about our calls:
- only the names our code may use exist (none of the removed ones: build_engine,
  max_workspace_size, execute_async_v2, bindings, BuilderFlag.FP16/INT8 under TRT 11);
- the network's input names come from the parsed graph, and a profile must name one of them;
- set_tensor_address refuses a name the engine does not have (returns False);
- set_input_shape refuses another tensor's name or a shape outside the optimization profile
  the engine was built with (returns False);
- capturing an enqueue before a plain one at that shape, or a copy inside a capture, fails.
They record what they were asked. The engine-vs-reference check compares onnxruntime with
onnxruntime: it proves our calls, not TensorRT's numerics.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.util
import json
import types

import numpy as np

PLAN_MAGIC = b"FAKEPLAN\n"
REAL_BUILDER = importlib.util.find_spec("tensorrt_rtx_bindings") is not None


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
        self.inputs: list[_Tensor] = []  # filled by the parser from the graph
        self.outputs: list[_Tensor] = []

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
    trt.real_builds = []  # TensorRT-RTX build records, where it is installed
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
            names = {t.name for t in network.inputs}
            if not network.inputs or len(config.profiles) != 1 or set(config.profiles[0].shapes) != names:
                return None  # TensorRT needs a profile covering every dynamic input
            header = {"profile": {k: [list(s) for s in v] for k, v in config.profiles[0].shapes.items()},
                      "inputs": sorted(names), "outputs": [t.name for t in network.outputs]}
            if REAL_BUILDER:  # TensorRT-RTX builds the same graph with the same profile, for real
                from llm4seg.export import rtx_build

                (shapes,) = config.profiles[0].shapes.values()
                record = rtx_build.build_record(trt.parsed, ("SM89",), shapes)
                trt.real_builds.append(record)
                if not record["ok"]:
                    return None
                header["real_engine_bytes"] = record["targets"]["SM89"]["engine_bytes"]
            with open(trt.parsed, "rb") as f:
                blob = PLAN_MAGIC + json.dumps(header).encode() + b"\n" + f.read()
            return _HostMemory(blob) if build_ok else None

    class OnnxParser:
        def __init__(self, network: _Network, logger: Logger) -> None:
            self.network, self.errors = network, []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def parse_from_file(self, path: str) -> bool:
            import onnx

            try:
                model = onnx.load(path)
            except Exception:  # noqa: BLE001  (any unparsable bytes)
                self.errors = ["ModelImporter: failed to parse the ONNX protobuf"]
                return False
            self.errors = []
            if REAL_BUILDER:  # NVIDIA's own parser decides, errors verbatim
                from llm4seg.export import rtx_build

                record = rtx_build.build_record(path, (), ((1,), (1,), (1,)))
                self.errors = list(record["parse"]["errors"]) or ([] if record["parse"]["ok"] else ["parse failed"])
            if self.errors or not parse_ok:
                self.errors = self.errors or ["In node 0: forced parse failure"]
                return False
            self.network.inputs = [_Tensor(v.name) for v in model.graph.input]
            self.network.outputs = [_Tensor(v.name) for v in model.graph.output]
            trt.parsed = path
            return True

        def get_error(self, index: int) -> str:
            return self.errors[index]

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
        def __init__(self, session, device: _Device, header: dict) -> None:
            self.session, self.device, self.addresses, self.shape, self.ready = session, device, {}, None, False
            self.header = header

        def set_tensor_address(self, name: str, address: int) -> bool:
            if name not in (*self.header["inputs"], *self.header["outputs"]):
                return False
            self.addresses[name] = address
            return True

        def set_input_shape(self, name: str, shape) -> bool:
            if name not in self.header["profile"]:
                return False
            lo, _, hi = self.header["profile"][name]
            if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
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
            (inp,), (out,) = self.header["inputs"], self.header["outputs"]
            x = self.device.array(self.addresses[inp], self.shape).copy()
            y = self.session.run([out], {inp: x})[0]
            self.device.array(self.addresses[out], y.shape)[...] = y

    class Engine:
        def __init__(self, session, device, header: dict) -> None:
            self.session, self.device, self.header = session, device, header
            self.names = [*header["outputs"], *header["inputs"]]  # outputs first: the backend must ask for the mode
            self.num_io_tensors = len(self.names)

        def get_tensor_name(self, index: int) -> str:
            return self.names[index]

        def get_tensor_mode(self, name: str):
            return trt.TensorIOMode.INPUT if name in self.header["inputs"] else trt.TensorIOMode.OUTPUT

        def create_execution_context(self) -> Context:
            return Context(self.session, self.device, self.header)

    class Runtime:
        def __init__(self, logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, blob: bytes):
            if not blob.startswith(PLAN_MAGIC):
                return None
            header, graph = blob[len(PLAN_MAGIC):].split(b"\n", 1)
            return Engine(ort.InferenceSession(graph, providers=["CPUExecutionProvider"]), trt.device,
                          json.loads(header))

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


def install(monkeypatch, **kw) -> types.ModuleType:
    """Put a fresh `tensorrt` stand-in and a matching `cuda.bindings.runtime` into sys.modules."""
    import sys

    trt = make_module(**kw)
    cudart = make_cudart(trt.device)
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    for name, module in (("tensorrt", trt), ("cuda", types.ModuleType("cuda")), ("cuda.bindings", bindings),
                         ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, module)
    return trt
