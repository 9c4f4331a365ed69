"""manifest.json: everything the runtime needs to feed an artifact and read its output.

Read by llm4seg.runtime without torch; written here at export time.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from llm4seg.fileio import write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("llm4seg", "torch", "onnx", "onnxruntime", "tensorrt"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            continue
    return versions


def build_manifest(*, artifact: str, precision: str, model_config: dict[str, Any], checkpoint_sha256: str,
                   opset: int | None, batch_range: tuple[int, int, int], folds: dict[str, Any],
                   parity: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    size = model_config["image_size"]
    channels = model_config["in_channels"]
    return {
        "format": "llm4seg-artifact",
        "manifest_version": MANIFEST_VERSION,
        "artifact": artifact,
        "precision": precision,
        "opset": opset,
        "inputs": [{"name": "image", "dtype": "float32", "shape": ["batch", channels, size, size],
                    "layout": "NCHW", "color": "RGB"}],
        "outputs": [{"name": "prob", "dtype": "float32", "shape": ["batch", model_config["num_classes"], size, size],
                     "meaning": "foreground probability (sigmoid applied)"}],
        "batch": {"min": batch_range[0], "opt": batch_range[1], "max": batch_range[2]},
        "image_size": size,
        "preprocess": {"scale": 1 / 255.0, "mean": list(model_config["mean"]), "std": list(model_config["std"]),
                       "paper_double_scaling": bool(model_config.get("paper_double_scaling", False)),
                       # Frames are resized to image_size x image_size with these OpenCV interpolations,
                       # as training resized its images (area when shrinking).
                       "resize": {"down": "area", "up": "linear"},
                       "bit_depth": 8},
        "threshold": model_config.get("threshold", 0.5),
        "model": {"name": model_config["name"], "block": model_config.get("block")},
        "folds": folds,
        "checkpoint_sha256": checkpoint_sha256,
        "parity": parity or {},
        "tool_versions": tool_versions(),
        **(extra or {}),
    }


def write_manifest(folder: Path, manifests: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None) -> Path:
    """One manifest.json per export folder, keyed by artifact file name. The folder is always a
    fresh one (see workdir.py), so nothing from an earlier export is merged in."""
    path = Path(folder) / MANIFEST_NAME
    write_json_atomic(path, {"format": "llm4seg-artifacts", "manifest_version": MANIFEST_VERSION,
                             "artifacts": manifests, **(extra or {})})
    return path
