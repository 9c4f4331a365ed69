"""Checkpoint folders: model.safetensors (every weight, frozen layer included) + config.json.

Loading never unpickles and never needs the LLM source: the layer's spec and weights travel
in the folder, and a sha256 over the frozen tensors detects a swapped or corrupted layer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from llm4seg import __version__
from llm4seg._optional import require
from llm4seg.errors import CheckpointError
from llm4seg.fileio import atomic_path, file_sha256, safetensors_problem, save_safetensors, write_json_atomic
from llm4seg.models.config import ModelConfig
from llm4seg.models.net import LLM4SegNet
from llm4seg.models.registry import model_from_config

FORMAT_NAME = "llm4seg-checkpoint"
# 2: config.json carries config_sha256, a digest of everything else in it (model settings included).
FORMAT_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Order-independent digest of named tensors (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def config_sha256(config: dict[str, Any]) -> str:
    """Digest of a checkpoint config without its own `config_sha256` (canonical JSON), so an edit of
    any setting (image size, threshold, normalisation, model name) is caught at load."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_checkpoint(model: LLM4SegNet, path: Path | str, extra: dict[str, Any] | None = None) -> Path:
    """Write `path/` atomically file by file; weights first, so a config always has its weights."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_safetensors(state, tmp, folder / WEIGHTS_FILE)
    block = model.config.block
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "llm4seg_version": __version__,
        "model": model.config.to_dict(),
        "llm": None if block is None else {
            "source": block.source, "layer": block.layer, "init": block.init, "trainable": block.trainable,
        },
        "frozen_sha256": tensors_sha256(model.frozen_state_dict()),
        "weights_sha256": file_sha256(folder / WEIGHTS_FILE),
        "extra": extra or {},
    }
    config["config_sha256"] = config_sha256(config)
    write_json_atomic(folder / CONFIG_FILE, config)
    return folder



def read_checkpoint_config(path: Path | str) -> dict[str, Any]:
    """The checkpoint folder's config.json (model config, weights_sha256, versions), checked; a
    CheckpointError naming what is missing or malformed.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {str(folder)!r} is not a folder",
                              hint="pass the folder written by `llm4seg train` (it holds config.json)")
    cfg_path = folder / CONFIG_FILE
    try:
        config = json.loads(cfg_path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}", hint="pass a checkpoint folder written by llm4seg") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({exc})", hint="the checkpoint is corrupt; use another") from exc
    if isinstance(config, dict) and config.get("format") == "llm4seg-run":
        best = Path(folder) / "checkpoints" / "best"
        raise CheckpointError(f"{folder} is a training run folder, not a checkpoint",
                              hint=f"pass its checkpoint: {best}" + ("" if best.is_dir() else
                                   " (not written yet: the run has not saved; resume it with llm4seg train --resume)"))
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{folder} is not an llm4seg checkpoint (format={config.get('format') if isinstance(config, dict) else None!r})",
                              hint="pass a folder written by `llm4seg train` or llm4seg.save_checkpoint")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{cfg_path} has format_version {version!r}, expected an integer 1..{FORMAT_VERSION}",
                              hint="the checkpoint's config.json was edited or damaged; use another checkpoint")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{folder} has format version {version}, this llm4seg reads <= {FORMAT_VERSION}",
                              hint="upgrade llm4seg")
    if version < FORMAT_VERSION:
        raise CheckpointError(f"{folder} has format version {version}, written before config.json carried a digest "
                              "of its own settings", hint="its settings cannot be checked; re-train (or resume the run: "
                              "its next save writes format 2) with this llm4seg")
    for key in ("weights_sha256", "frozen_sha256", "config_sha256"):  # every one always written: never skip a check
        if not isinstance(config.get(key), str) or len(config[key]) != 64:
            raise CheckpointError(f"{cfg_path} has no valid {key} (found {config.get(key)!r})",
                                  hint="integrity digests are required; the config.json was edited or damaged")
    if config_sha256(config) != config["config_sha256"]:
        raise CheckpointError(f"{cfg_path} was changed after it was saved (its settings no longer match config_sha256)",
                              hint="restore the original config.json or use another checkpoint; settings such as "
                              "image_size, threshold or mean/std must not be edited by hand")
    return config


def load_checkpoint(path: Path | str, device: str | torch.device = "cpu") -> LLM4SegNet:
    """Rebuild the model from its own config and weights; checks both digests."""
    load_file = require("safetensors.torch").load_file
    folder = Path(path)
    config = read_checkpoint_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder} has no {WEIGHTS_FILE}", hint="the checkpoint is incomplete; use another")
    problem = safetensors_problem(weights)
    if problem:
        raise CheckpointError(f"{weights} is not a valid safetensors file: {problem}",
                              hint="the checkpoint is corrupt or crafted; use another")
    if file_sha256(weights) != config["weights_sha256"]:
        raise CheckpointError(f"{weights} does not match the sha256 in its config.json",
                              hint="the file is corrupt or was replaced; use another checkpoint")
    try:
        model = model_from_config(ModelConfig.from_dict(config["model"]))
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001  safetensors, torch and our config raise many types here
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"cannot rebuild the model in {folder}: {exc}",
                              hint="the weights do not match config.json; the checkpoint is corrupt") from exc
    if tensors_sha256(model.frozen_state_dict()) != config["frozen_sha256"]:
        raise CheckpointError(f"the frozen LLM layer in {folder} differs from the one recorded at save time",
                              hint="the checkpoint was altered; re-export it from training")
    return model.to(device).eval()
