"""Building a manifest entry from a model's config and what the export measured (the export's side
of runtime/core/manifest.py; entries are sealed when written)."""

from __future__ import annotations

import platform
from typing import Any

from llm4seg.contract import FrameContract
from llm4seg.runtime.core.manifest import ENTRY_FORMAT, MANIFEST_VERSION


def tool_versions() -> dict[str, str]:
    """Versions of the tools present where an artifact is made (those not installed are left out)."""
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
                   parity: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                   frames: dict[str, Any] | None = None) -> dict[str, Any]:
    """One artifact's manifest entry, from the model's config and what the export measured.

    Args:
        artifact: the file name (model.onnx, model.fp16.onnx, model.pt2, model.fp16.plan, ...).
        precision: fp32, fp16 or int8.
        model_config: the checkpoint's model config (image_size, in_channels, num_classes, mean,
            std, threshold, name, block, paper_double_scaling).
        batch_range: (min, opt, max) of the dynamic batch dimension.
        parity: the held-out-image gate measured on this very artifact (empty until it ran).
        extra: further fields (sha256, size_bytes, engine, ...), which win over the built ones.
        frames: for a frames graph, {'form': 'any-size' | 'model-size', 'input_color': 'BGR' | 'RGB'}:
            uint8 NHWC frames in, prob and mask out, the contract inside.

    The `preprocess` table is the frame contract (llm4seg.contract) written out; for a float graph
    the runtime applies it on the host, a frames graph applies it inside.
    """
    contract = FrameContract.from_model_config(model_config)
    size, channels = contract.image_size, model_config["in_channels"]
    inputs, outputs = _io(contract, channels, model_config["num_classes"], frames)
    return {
        "format": ENTRY_FORMAT,
        "manifest_version": MANIFEST_VERSION,
        "artifact": artifact,
        "precision": precision,
        "opset": opset,
        "inputs": inputs,
        "outputs": outputs,
        "batch": {"min": batch_range[0], "opt": batch_range[1], "max": batch_range[2]},
        "image_size": size,
        "preprocess": contract.to_manifest(),
        "threshold": contract.threshold,
        **({"frames": _frames_table(contract, frames)} if frames else {}),
        "model": {"name": model_config["name"], "block": model_config.get("block")},
        "folds": folds,
        "checkpoint_sha256": checkpoint_sha256,
        "parity": parity or {},
        "tool_versions": tool_versions(),
        **(extra or {}),
    }


def _io(contract: FrameContract, channels: int, classes: int,
        frames: dict[str, Any] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The inputs and outputs tables of a float graph or a frames graph."""
    size = contract.image_size
    if not frames:
        return ([{"name": "image", "dtype": "float32", "shape": ["batch", channels, size, size], "layout": "NCHW",
                  "color": contract.color}],
                [{"name": "prob", "dtype": "float32", "shape": ["batch", classes, size, size],
                  "meaning": "foreground probability (sigmoid applied)"}])
    h, w = ("height", "width") if frames["form"] == "any-size" else (size, size)
    if frames["form"] == "nvinfer":  # DeepStream: float pixel values 0-255, NCHW, at the model's size
        inputs = [{"name": "frames", "dtype": "float32", "shape": ["batch", channels, size, size], "layout": "NCHW",
                   "color": frames["input_color"], "meaning": "pixel values 0-255 (nvinfer: net-scale-factor=1, offsets 0)"}]
    else:
        inputs = [{"name": "frames", "dtype": "uint8", "shape": ["batch", h, w, channels], "layout": "NHWC",
                   "color": frames["input_color"]}]
    return (inputs,
            [{"name": "prob", "dtype": "float32", "shape": ["batch", classes, h, w],
              "meaning": "foreground probability at the frame's size" if h == "height" else
              "foreground probability at the model's size"},
             {"name": "mask", "dtype": "uint8", "shape": ["batch", classes, h, w], "meaning": "prob > threshold, 0/1"}])


def _frames_table(contract: FrameContract, frames: dict[str, Any]) -> dict[str, Any]:
    inside = ["colour order", "scale, mean/std"] if frames["form"] == "nvinfer" else \
        ["uint8 -> float32", "colour order", "scale, mean/std"]
    if frames["form"] == "any-size":
        inside[2:2] = [f"resize to {contract.image_size} (per axis: {contract.resize_down} down, "
                       f"{contract.resize_up} up; rounded to 8 bits)"]
        inside.append(f"probabilities back to the frame's size ({contract.mask_resize})")
    inside.append(f"mask = prob > {contract.threshold}")
    return {"form": frames["form"], "input_color": frames["input_color"], "model_color": contract.color,
            "inside": inside, "source": frames.get("source")}


__all__ = ["build_manifest", "tool_versions"]
