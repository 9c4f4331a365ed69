"""A strict stand-in for the `tensorrt` module: only the TensorRT 10/11 builder API surface.

It exposes exactly the names our builder may use (and none of the removed ones: build_engine,
max_workspace_size, BuilderFlag.FP16/INT8 under TRT 11), records what it was asked, and returns
deterministic bytes, so the code around the build (flags, profile, workspace, timing cache,
engine cache, error paths) is exercised where TensorRT itself cannot be installed. It proves
nothing about TensorRT's behaviour; the real build test runs where `tensorrt` imports.
"""

from __future__ import annotations

import enum
import types


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
            return _HostMemory(b"plan:" + trt.__version__.encode()) if build_ok else None

    class OnnxParser:
        def __init__(self, network: _Network, logger: Logger) -> None:
            self.num_errors = 0 if parse_ok else 1

        def parse_from_file(self, path: str) -> bool:
            trt.parsed = path
            return parse_ok

        def get_error(self, index: int) -> str:
            return "In node 3 (Attention): unsupported operator"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt
