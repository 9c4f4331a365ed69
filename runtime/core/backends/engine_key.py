"""The identity of a TensorRT engine: what it was built from and for. An engine runs only on a
machine whose key matches (engines are specific to GPU, compute capability and TensorRT version).
Shared by the export (which records it) and the runtime (which checks it); no torch here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from llm4seg.errors import BackendUnavailableError


@dataclass(frozen=True)
class EngineKey:
    """What a TensorRT engine is valid for: source ONNX digest, TensorRT version, GPU, compute
    capability, precision, optimisation profile and product (TensorRT or TensorRT-RTX). An engine
    whose key differs from the device's is refused, never run."""
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    # "TensorRT" (10/11, built on the GPU it runs on) or "TensorRT-RTX" (built for a compute
    # capability, on any machine; gpu_name is then ANY_GPU: any GPU of that capability runs it).
    product: str = "TensorRT"

    def digest(self) -> str:
        """A short stable hash of the key (part of cached engine names)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """The key as the manifest records it; the builder's version under its product's name
        (`tensorrt_version`, or `tensorrt_rtx_version` for a TensorRT-RTX engine)."""
        data = asdict(self)
        data[version_field(self.product)] = data.pop("tensorrt_version")
        data["profile"] = [list(s) for s in self.profile]
        data["digest"] = self.digest()
        return data


def version_field(product: str) -> str:
    """Where a key records its builder's version: TensorRT-RTX versions are not TensorRT versions."""
    return "tensorrt_rtx_version" if product == "TensorRT-RTX" else "tensorrt_version"


def mismatches(recorded: dict[str, Any], current: EngineKey) -> list[str]:
    """What differs between an engine's recorded key and this machine: empty means usable."""
    now = current.to_dict()
    version = version_field(current.product)
    return [f"{k}: engine has {recorded.get(k)!r}, this machine {now[k]!r}"
            for k in ("product", "onnx_sha256", version, "gpu_name", "compute_capability", "precision", "profile")
            if recorded.get(k, "TensorRT" if k == "product" else None) != now[k]]


ANY_GPU = "any GPU of this compute capability"
# The Python module that builds and runs each product's engines.
MODULE_FOR_PRODUCT = {"TensorRT": "tensorrt", "TensorRT-RTX": "tensorrt_rtx_bindings"}


def capability_from_target(target: str) -> str:
    """'SM89' -> '8.9', 'SM120' -> '12.0' (the form cudaGetDeviceProperties reports)."""
    digits = target.upper().removeprefix("SM")
    return f"{digits[:-1]}.{digits[-1]}"



def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(name, 'major.minor') of a CUDA device through cuda-python."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6 layout
        except ImportError as exc:
            raise BackendUnavailableError("cuda-python, which finds the GPU, is not installed here, and an engine runs "
                                          "only on an NVIDIA GPU",
                                          hint="run this on the machine with the GPU the engine is for (there, "
                                               "pip install cuda-python with its TensorRT)") from exc
    err, props = cudart.cudaGetDeviceProperties(device)
    if int(err) != 0:
        raise BackendUnavailableError(f"no CUDA device {device} (cudaGetDeviceProperties error {err})",
                                      hint="run the TensorRT build on a machine with an NVIDIA GPU")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00"), f"{props.major}.{props.minor}"
