"""Runtime backends behind one interface; chosen by key or by the artifact's kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm4seg.errors import ConfigError
from llm4seg.runtime.core.backends.base import Backend
from llm4seg.runtime.core.manifest import load_manifest

BACKENDS = ("onnxruntime", "tensorrt", "torch", "triton")


def backend_for(artifact: Path | str) -> str:
    """The backend key for an artifact path (by suffix) or a server address (triton)."""
    from llm4seg.runtime.core.backends.triton_backend import is_server_url

    if is_server_url(artifact):
        return "triton"
    path = Path(artifact)
    if path.is_dir():
        load_manifest(path)  # raises: the runtime runs exported artifacts, and says how to make one
    if path.suffix == ".pt2":
        return "torch"
    if path.suffix == ".plan" or path.suffix == ".engine":
        return "tensorrt"
    if path.suffix == ".onnx":
        return "onnxruntime"
    raise ConfigError(f"cannot tell the backend for {str(path)!r}",
                      hint="pass a .onnx, .plan or .pt2 written by `llm4seg export` (a checkpoint folder must be exported "
                           "first), or a server address grpc://HOST:8001/MODEL")


def load_backend(artifact: Path | str, backend: str | None = None, **options: Any) -> Backend:
    """Construct (not yet load) the backend for an artifact: onnxruntime, tensorrt, torch, or triton
    for a server address (grpc://HOST:8001/MODEL, http://HOST:8000/MODEL)."""
    key = backend or backend_for(artifact)
    if key == "onnxruntime":
        from llm4seg.runtime.core.backends.onnxruntime_backend import OnnxRuntimeBackend as cls
    elif key == "tensorrt":
        from llm4seg.runtime.core.backends.tensorrt_backend import TensorRTBackend as cls
    elif key == "torch":
        from llm4seg.runtime.core.backends.torch_backend import TorchBackend as cls
    elif key == "triton":
        from llm4seg.runtime.core.backends.triton_backend import TritonBackend as cls
    else:
        raise ConfigError(f"unknown backend {key!r}", hint=f"choose one of {', '.join(BACKENDS)}")
    _check_options(cls, key, options)
    return cls(artifact, **options)


def _check_options(cls: type, key: str, options: dict[str, Any]) -> None:
    """Options a backend does not take are named, with the ones it does (not a bare TypeError)."""
    import inspect

    accepted = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "artifact")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"the {key} backend has no option {', '.join(map(repr, unknown))}",
                          hint=f"it takes {', '.join(accepted)}"
                               + ("; compile= is for .pt2 programs (the torch backend)" if "compile" in unknown else ""))


__all__ = ["BACKENDS", "Backend", "backend_for", "load_backend"]
