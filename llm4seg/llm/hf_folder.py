"""Read one decoder layer from a local Hugging Face folder (config.json + safetensors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llm4seg._optional import require
from llm4seg.errors import LLMSourceError
from llm4seg.llm.spec import LayerSpec

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def read_config(path: Path) -> dict[str, Any]:
    """A JSON file of a model folder, or an LLMSourceError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise LLMSourceError(f"{path} does not exist", hint="an HF model folder needs config.json") from exc
    except json.JSONDecodeError as exc:
        raise LLMSourceError(f"{path} is not valid JSON: {exc}", hint="re-download config.json") from exc


def layer_keys(weight_map: dict[str, str], layer: int, prefix: str = "model.layers.") -> dict[str, str]:
    """Map the layer's full tensor names (model.layers.N.x) to the file that holds each."""
    head = f"{prefix}{layer}."
    return {k: f for k, f in weight_map.items() if k.startswith(head)}


def weight_map_from_folder(folder: Path) -> dict[str, str]:
    """Tensor name -> safetensors file of a transformers folder (its index, or the single file)."""
    index = folder / INDEX_FILE
    if index.is_file():
        return read_config(index)["weight_map"]
    single = folder / SINGLE_FILE
    if single.is_file():
        _check_shard(single)
        safe_open = require("safetensors").safe_open
        with safe_open(str(single), framework="pt") as f:
            return {k: SINGLE_FILE for k in f.keys()}
    raise LLMSourceError(
        f"{folder} has neither {SINGLE_FILE} nor {INDEX_FILE}",
        hint="the folder must hold the model's safetensors weights (pytorch .bin files are not read)",
    )


def read_tensors(files: dict[str, str], folder: Path, layer: int) -> dict[str, Any]:
    """Read only the listed tensors, shard by shard, and strip the layer prefix."""
    safe_open = require("safetensors").safe_open
    by_file: dict[str, list[str]] = {}
    for key, fname in files.items():
        by_file.setdefault(fname, []).append(key)
    out: dict[str, Any] = {}
    head = f"model.layers.{layer}."
    for fname, keys in by_file.items():
        shard = folder / fname
        # Lexically inside the folder: the HF cache's snapshot folders hold shards as symlinks into
        # ../../blobs, which are fine; a name that climbs out (.., absolute) is not.
        if Path(fname).is_absolute() or ".." in Path(fname).parts:
            raise LLMSourceError(f"{INDEX_FILE} in {folder} points outside its folder ({fname!r})",
                                 hint="an HF index lists shard file names inside the model folder; use an unaltered download")
        if not shard.is_file():
            raise LLMSourceError(
                f"shard {fname} (holding layer {layer}) is missing from {folder}",
                hint="download the complete model, or at least that shard",
            )
        _check_shard(shard)
        with safe_open(str(shard), framework="pt") as f:
            for key in keys:
                out[key[len(head):]] = f.get_tensor(key).float()
    return out


def _check_shard(shard: Path) -> None:
    from llm4seg.fileio import safetensors_problem

    problem = safetensors_problem(shard)
    if problem:
        raise LLMSourceError(f"{shard} is not a valid safetensors file: {problem}",
                             hint="download that shard again (a damaged or crafted file is never read)")


class HFFolderSource:
    """A decoder layer from a local transformers folder (config.json + safetensors)."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder).expanduser()
        self.name = str(self.folder)
        self._spec: LayerSpec | None = None

    def spec(self) -> LayerSpec:
        """The layer's shapes from config.json (read once)."""
        if self._spec is None:
            self._spec = LayerSpec.from_hf_config(read_config(self.folder / "config.json"))
        return self._spec

    def read_layer(self, layer: int) -> dict[str, Any]:
        """Decoder layer `layer`'s tensors, read only from the shards that hold them."""
        files = layer_keys(weight_map_from_folder(self.folder), layer)
        if not files:
            raise LLMSourceError(
                f"{self.folder} has no tensors named model.layers.{layer}.*",
                hint="the weights do not match config.json, or the layer index is wrong",
            )
        return read_tensors(files, self.folder, layer)
