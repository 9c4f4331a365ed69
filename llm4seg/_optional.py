"""The one place heavy optional packages are imported from, with a fix in the error."""

from __future__ import annotations

import importlib
from types import ModuleType

from llm4seg.errors import BackendUnavailableError

# module name -> pip extra that provides it
_EXTRA_FOR_MODULE = {
    "torch": "train",
    "safetensors": "train",
    "gguf": "train",
    "huggingface_hub": "train",
    "matplotlib": "plot",
    "onnx": "export",
    "onnxscript": "export",
    "transformers": "dev",
    "tensorrt": "tensorrt",
    "cuda": "tensorrt",
    "polygraphy": "tensorrt",
    "tensorrt_rtx_bindings": "rtx",
    "PIL": "train",
    "av": "video",
    "gi": "gstreamer",
    "holoscan": "holoscan",
    "tritonclient": "triton",
    "pydicom": "dicom",
    "pylibjpeg": "dicom",
    "highdicom": "dicom",
    "pynetdicom": "dicom",
    "dicomweb_client": "dicom",
    "requests": "dicom",
    "ray": "ray",
    "submitit": "slurm",
    "yaml": "holoscan",
    "pdoc": "docs",
}

# What pip cannot install: the system packages a module needs, named in its error's hint.
_SYSTEM_PACKAGES = {
    "gi": "apt-get install python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 "
          "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav "
          "libgirepository1.0-dev libcairo2-dev pkg-config",
}


def system_hint(module: str) -> str:
    """The install hint for `module`: its system packages (if any), then its pip extra."""
    top = module.split(".")[0]
    pip = f"pip install 'llm4seg[{extra_for(top, default='dev')}]'"
    system = _SYSTEM_PACKAGES.get(top)
    return f"{system}, then {pip}" if system else pip


def extra_for(module: str, default: str = "train") -> str:
    """The pip extra that installs `module` (by its top-level name), else `default`."""
    return _EXTRA_FOR_MODULE.get(module.split(".")[0], default)


def require(module: str, purpose: str = "") -> ModuleType:
    """Import `module` or raise an error naming the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        what = f" for {purpose}" if purpose else ""
        raise BackendUnavailableError(
            f"the package '{top}' is needed{what} but cannot be imported ({exc})",
            hint=system_hint(top),
        ) from exc
