"""TensorRT engines (`model.<precision>.plan`) from typed FP16 or QDQ INT8 ONNX, with a build cache.

Written against the TensorRT 10 and 11 Python APIs: strongly typed networks (precision comes
from the ONNX types and QDQ nodes, never from builder flags), build_serialized_network, the
workspace through set_memory_pool_limit, one optimization profile for the batch range, and a
persistent timing cache. NOT RUN on the development machines (no TensorRT there); the cache-key
logic below is tested everywhere, the build only where `tensorrt` imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm4seg._optional import require
from llm4seg.errors import ExportError
from llm4seg.fileio import atomic_path, file_sha256
from llm4seg.runtime.core.backends.engine_key import EngineKey, gpu_identity, mismatches  # noqa: F401  (re-exported)


def profile_shapes(batch: tuple[int, int, int], channels: int, size: int):
    """(min, opt, max) input shapes of the optimization profile for a batch range."""
    return tuple((b, channels, size, size) for b in batch)


def engine_key(onnx_path: Path, precision: str, batch: tuple[int, int, int], channels: int, size: int) -> EngineKey:
    """The EngineKey of an engine built here from `onnx_path` (graph digest, TensorRT version, GPU)."""
    trt = require("tensorrt", "building TensorRT engines")
    name, cc = gpu_identity()
    return EngineKey(file_sha256(onnx_path), trt.__version__, name, cc, precision, profile_shapes(batch, channels, size))


def _network_flags(trt) -> int:
    # TRT 10: ask for strong typing. TRT 11: every network is strongly typed; the flag may be gone.
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def engine_from_onnx(onnx_path: Path, plan_path: Path, key: EngineKey, timing_cache: Path,
                     workspace_bytes: int = 4 << 30) -> Path:
    """Build a TensorRT engine from the ONNX graph into `plan_path` (strongly typed, one profile,
    the timing cache reused); an ExportError with the parser's errors when it cannot.
    """
    trt = require("tensorrt", "building TensorRT engines")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path.name}: {errors}",
                          hint="export with --opset 17 (decomposed ops parse on every TensorRT 10.x)")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, *key.profile)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path.name}",
                          hint="see the TensorRT log above; try a smaller --batch range or more workspace")
    with atomic_path(plan_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    with atomic_path(timing_cache) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return plan_path


def cached_engine(onnx_path: Path, out_dir: Path, precision: str, batch: tuple[int, int, int], channels: int,
                  size: int, cache_dir: Path) -> tuple[Path, dict[str, Any], bool]:
    """model.<precision>.plan, rebuilt unless the cache holds one for exactly this key."""
    key = engine_key(onnx_path, precision, batch, channels, size)
    cached = cache_dir / f"{key.digest()}.plan"
    plan = out_dir / f"model.{precision}.plan"
    built = False
    if not cached.is_file():
        engine_from_onnx(onnx_path, cached, key, cache_dir / "timing.cache")
        built = True
    with atomic_path(plan) as tmp:
        tmp.write_bytes(cached.read_bytes())
    return plan, key.to_dict(), built
