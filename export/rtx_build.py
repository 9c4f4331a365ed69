"""A real NVIDIA parse and build of every ONNX artifact, with TensorRT for RTX, on any machine.

TensorRT-RTX (`pip install 'llm4seg[rtx]'`, module `tensorrt_rtx_bindings`) holds NVIDIA's real
ONNX parser and engine builder. It needs no GPU to parse and to build an engine for a chosen
compute capability (SM75/80/86/89/120/121 are offered; no SM87 Jetson Orin, no SM90 Hopper);
only deserialising and running an engine needs one. So the export parses and builds each graph
for real and records what the builder said, under its own manifest key (`tensorrt_rtx_build`),
never mixed with the predicted TensorRT 10.x check (`tensorrt_check`, trt_check.py).

What this proves: NVIDIA's parser imports the graph and its builder produces an engine for those
targets. What it does not: the engine's numbers (it cannot run here) or TensorRT 10/11's parser
on Jetson (a different product; predicted by trt_check.py).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from llm4seg._optional import require
from llm4seg.errors import ConfigError, ExportError
from llm4seg.fileio import atomic_path

MODULE = "tensorrt_rtx_bindings"
PRODUCT = "TensorRT-RTX"
DEFAULT_TARGETS = ("SM89",)
# TensorRT-RTX appends this to every error on a machine without a driver; it says nothing about the graph.
_NO_DRIVER = "cudaError 35"


def available() -> bool:
    """Whether TensorRT-RTX can be imported here."""
    return importlib.util.find_spec(MODULE) is not None


def parse_targets(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'sm86,SM89' -> ('SM86', 'SM89'), checked against the compute capabilities TensorRT-RTX offers."""
    names = [t.strip().upper() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not names:
        raise ConfigError(f"--rtx-targets {text!r} names no target", hint="e.g. --rtx-targets SM89 or SM86,SM120")
    if available():
        offered = [n for n in require(MODULE).ComputeCapability.__members__ if n.startswith("SM")]
        unknown = [n for n in names if n not in offered]
        if unknown:
            raise ConfigError(f"--rtx-targets {', '.join(unknown)} is not a compute capability TensorRT-RTX builds for",
                              hint=f"offered: {', '.join(offered)} (no SM87 Jetson Orin, no SM90 H100/H200)")
    return tuple(dict.fromkeys(names))


def _logger(trt: Any, seen: list[str]) -> Any:
    class Collect(trt.ILogger):
        """Keeps the builder's errors verbatim (the parser's own come through get_error)."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg) -> None:  # noqa: ANN001  (TensorRT's signature)
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                seen.append(str(msg))

    return Collect()


def not_run(why: str) -> dict[str, Any]:
    """The record of a real build that did not run here, and why."""
    return {"product": PRODUCT, "ran": False, "ok": None, "why": why}


def _parse(trt: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = bool(parser.parse_from_file(str(onnx_path)))
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    return builder, network, parser, {"ok": ok and not errors, "layers": network.num_layers, "errors": errors}


def _build_one(trt: Any, builder: Any, network: Any, target: str, profile: tuple[tuple[int, ...], ...],
               seen: list[str], keep: Path | None) -> dict[str, Any]:
    config = builder.create_builder_config()
    config.num_compute_capabilities = 1
    config.set_compute_capability(trt.ComputeCapability.__members__[target], 0)
    shapes = builder.create_optimization_profile()
    shapes.set_shape(network.get_input(0).name, *profile)
    config.add_optimization_profile(shapes)
    before = len(seen)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - t0
    errors = seen[before:]
    if serialized is None:
        return {"ok": False, "build_s": round(build_s, 2), "errors": errors or ["build_serialized_network returned None"]}
    blob = bytes(serialized)
    if keep is not None:
        with atomic_path(keep) as tmp:
            tmp.write_bytes(blob)
    return {"ok": True, "engine_bytes": len(blob), "build_s": round(build_s, 2), "errors": []}


def build_record(onnx_path: Path | str, targets: tuple[str, ...], profile: tuple[tuple[int, ...], ...],
                 keep: dict[str, Path] | None = None) -> dict[str, Any]:
    """Parse `onnx_path` with TensorRT-RTX and build it for each compute capability in `targets`.

    Args:
        profile: (min, opt, max) input shapes of the optimization profile.
        keep: target -> path where that target's serialized engine is written (atomically).
    Returns:
        {'product', 'version', 'ran', 'ok', 'parse': {'ok', 'layers', 'errors'}, 'targets': {SMxx:
        {'ok', 'engine_bytes', 'build_s', 'errors'}}, 'profile'}; errors are the builder's verbatim.
        Where TensorRT-RTX is not installed, `not_run(...)`.
    """
    if not available():
        return not_run(f"{MODULE} is not installed here (pip install 'llm4seg[rtx]')")
    trt = require(MODULE, "the real TensorRT-RTX parse and build")
    seen: list[str] = []
    logger = _logger(trt, seen)
    builder, network, _parser, parse = _parse(trt, logger, Path(onnx_path))
    record = {"product": PRODUCT, "version": trt.__version__, "ran": True, "parse": parse, "targets": {},
              "profile": [list(s) for s in profile]}
    if parse["ok"]:
        for target in targets:
            record["targets"][target] = _build_one(trt, builder, network, target, profile, seen,
                                                   (keep or {}).get(target))
    record["ok"] = parse["ok"] and all(t["ok"] for t in record["targets"].values())
    return record


def first_error(record: dict[str, Any]) -> str:
    """The builder's first error, without the no-driver line TensorRT-RTX appends on GPU-less machines."""
    errors = record["parse"]["errors"] or [e for t in record["targets"].values() for e in t["errors"]]
    lines = [line for e in errors for line in str(e).splitlines() if line.strip() and _NO_DRIVER not in line]
    return lines[-1] if lines else "no error text"


def refusal(name: str, record: dict[str, Any], hint: str | None = None) -> ExportError:
    """The error for a graph the real builder refused, with the builder's own message."""
    stage = "parse" if not record["parse"]["ok"] else "build for " + ", ".join(
        t for t, r in record["targets"].items() if not r["ok"])
    return ExportError(f"{name}: {PRODUCT} {record['version']} refused it ({stage}): {first_error(record)}",
                       hint=hint or "the artifact is not TensorRT-ready and was not kept; report this with the "
                       "checkpoint's config.json and the export log")


def summary(record: dict[str, Any]) -> str:
    """One line for the export's log."""
    if not record["ran"]:
        return f"{PRODUCT} build NOT RUN ({record['why']})"
    if not record["ok"]:
        return f"{PRODUCT} {record['version']} REFUSED: {first_error(record)}"
    built = ", ".join(f"{t} {r['engine_bytes'] / 1e6:.1f} MB in {r['build_s']:.1f} s" for t, r in record["targets"].items())
    return f"{PRODUCT} {record['version']} parsed ({record['parse']['layers']} layers) and built: {built}"
