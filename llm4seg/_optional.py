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
}


def extra_for(module: str, default: str = "train") -> str:
    """The pip extra that installs `module` (by its top-level name), else `default`."""
    return _EXTRA_FOR_MODULE.get(module.split(".")[0], default)


def require(module: str, purpose: str = "") -> ModuleType:
    """Import `module` or raise an error naming the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = extra_for(top, default="dev")
        what = f" for {purpose}" if purpose else ""
        raise BackendUnavailableError(
            f"the package '{top}' is needed{what} but cannot be imported ({exc})",
            hint=f"pip install 'llm4seg[{extra}]'",
        ) from exc
