"""Read an artifact's manifest entry (or describe a checkpoint the same way), without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm4seg.errors import CheckpointError, ConfigError

MANIFEST_NAME = "manifest.json"


def load_manifest(artifact: Path | str) -> dict[str, Any]:
    """The manifest entry of `artifact` (model.onnx, model.fp16.plan, ...) or of a checkpoint folder."""
    path = Path(artifact)
    if path.is_dir():
        return _checkpoint_manifest(path)
    if not path.is_file():
        raise ConfigError(f"artifact {str(path)!r} does not exist",
                          hint="pass a .onnx or .plan written by `llm4seg export`, or a checkpoint folder")
    manifest_path = path.parent / MANIFEST_NAME
    try:
        entries = json.loads(manifest_path.read_text())["artifacts"]
    except FileNotFoundError:
        raise ConfigError(f"{path.name} has no {MANIFEST_NAME} beside it in {path.parent}",
                          hint="keep the artifact in the folder `llm4seg export` wrote, with its manifest") from None
    except (json.JSONDecodeError, KeyError) as exc:
        raise ConfigError(f"{manifest_path} is not an llm4seg manifest ({exc})", hint="re-run `llm4seg export`") from exc
    if path.name not in entries:
        raise ConfigError(f"{manifest_path} has no entry for {path.name} (it lists {sorted(entries)})",
                          hint="re-run `llm4seg export` for this artifact")
    return entries[path.name]


def _checkpoint_manifest(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text())
        model = config["model"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as exc:
        raise CheckpointError(f"{folder} is not an llm4seg checkpoint ({exc})",
                              hint="pass a checkpoint folder, or a .onnx/.plan artifact") from exc
    size, ch = model["image_size"], model["in_channels"]
    return {
        "artifact": str(folder), "precision": "fp32", "image_size": size, "threshold": model.get("threshold", 0.5),
        "inputs": [{"name": "image", "dtype": "float32", "shape": ["batch", ch, size, size]}],
        "outputs": [{"name": "prob", "dtype": "float32", "shape": ["batch", model["num_classes"], size, size]}],
        "batch": {"min": 1, "opt": 1, "max": 1024},
        "preprocess": {"scale": 1 / 255.0, "mean": model["mean"], "std": model["std"],
                       "paper_double_scaling": model.get("paper_double_scaling", False)},
    }
