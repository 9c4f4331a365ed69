"""The run's saved state as one atomic unit: a numbered folder per save, then one pointer switch.

Layout inside a run folder:
    state/step-000000120/   model.safetensors + config.json (a checkpoint), optimizer.safetensors,
                            counters.json (epoch, step, best, and the digests of both weight files)
    state/best-epoch-0007/  the best checkpoint so far (written when it changes)
    state/CURRENT           {"state": "step-000000120", ...}: the only file that says what is current
    checkpoints/last, checkpoints/best: published copies (hard links) of the current state's folders

A save writes the new folders completely under temporary names, renames them, and only then
replaces CURRENT; a kill at any point leaves either the old or the new state current, never a
mix. Resume reads CURRENT, checks that every file it loads carries the digests counters.json
recorded for that step, and re-publishes checkpoints/ (a kill may have left them half-switched).
Nothing is pickled: optimizer buffers are safetensors, counters are JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm4seg._optional import require
from llm4seg.checkpoint import load_checkpoint, save_checkpoint
from llm4seg.errors import CheckpointError
from llm4seg.fileio import fault_point, file_sha256, fresh_folder, save_safetensors, swap_folder, write_json_atomic

OPTIMIZER_FILE = "optimizer.safetensors"
COUNTERS_FILE = "counters.json"
POINTER_FILE = "CURRENT"


@dataclass
class SavedState:
    """What resume gets back: the model, optimizer buffers by parameter name, and the counters."""

    model: torch.nn.Module
    buffers: dict[str, torch.Tensor]
    counters: dict[str, Any]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit_folder(tmp: Path, final: Path) -> None:
    """Put a completely written folder in place (replacing a leftover of a crashed save)."""
    _fsync_dir(tmp)
    swap_folder(tmp, final, label="renamed")


def optimizer_buffers(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """SGD momentum buffers keyed by parameter name (portable across processes and devices)."""
    names = {id(p): n for n, p in model.named_parameters()}
    buffers = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buffers[names[id(p)]] = buf.detach().cpu().contiguous()
    return buffers


def save_state(state_dir: Path, model, optimizer, counters: dict[str, Any], extra: dict[str, Any],
               best: tuple[dict[str, torch.Tensor], dict[str, Any]] | None) -> dict[str, Any]:
    """Write one complete state and make it current. `best` = (trainable weights, extra) when the
    best checkpoint changed since the last save. Returns the pointer written."""
    state_dir.mkdir(parents=True, exist_ok=True)
    counters = dict(counters)
    if best is not None:
        weights, best_extra = best
        name = f"best-epoch-{best_extra['epoch']:04d}"
        live = {k: v.detach().clone() for k, v in model.state_dict().items() if k in weights}
        model.load_state_dict(weights, strict=False)
        tmp = fresh_folder(state_dir, name)
        save_checkpoint(model, tmp, extra=best_extra)
        model.load_state_dict(live, strict=False)
        _commit_folder(tmp, state_dir / name)
        counters["best_state"] = name
    name = f"step-{counters['step']:09d}"
    tmp = fresh_folder(state_dir, name)
    save_checkpoint(model, tmp, extra=extra)
    save_safetensors(optimizer_buffers(model, optimizer), tmp / OPTIMIZER_FILE, state_dir / name / OPTIMIZER_FILE)
    fault_point(f"wrote {OPTIMIZER_FILE}")
    counters["weights_sha256"] = json.loads((tmp / "config.json").read_text())["weights_sha256"]
    counters["optimizer_sha256"] = file_sha256(tmp / OPTIMIZER_FILE)
    write_json_atomic(tmp / COUNTERS_FILE, counters)
    _commit_folder(tmp, state_dir / name)
    pointer = {"state": name, "step": counters["step"], "epoch": counters["epoch"],
               "epoch_step": (counters.get("within_epoch") or {}).get("steps", 0), "best_state": counters.get("best_state")}
    write_json_atomic(state_dir / POINTER_FILE, pointer)
    _prune(state_dir, pointer)
    return pointer


def _prune(state_dir: Path, pointer: dict[str, Any]) -> None:
    keep = {pointer["state"], pointer.get("best_state"), POINTER_FILE}
    for entry in state_dir.iterdir():
        if entry.name not in keep and not entry.name.startswith("."):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def read_pointer(state_dir: Path) -> dict[str, Any] | None:
    """The current state's pointer, or None when no save has completed yet."""
    path = state_dir / POINTER_FILE
    if not path.is_file():
        return None
    try:
        pointer = json.loads(path.read_text())
        pointer["state"], pointer["step"]  # noqa: B018  (both must be there)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc})",
                              hint="the run's state pointer was damaged outside llm4seg; start a new run") from exc
    return pointer


def load_state(state_dir: Path, pointer: dict[str, Any]) -> SavedState:
    """Load the state CURRENT points to, refusing any file that belongs to another step."""
    load_file = require("safetensors.torch").load_file
    folder = state_dir / pointer["state"]
    try:
        counters = json.loads((folder / COUNTERS_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"the run state {folder} has no readable {COUNTERS_FILE} ({exc})",
                              hint="the state was damaged outside llm4seg; start a new run") from exc
    model = load_checkpoint(folder)  # checks the weights file against its own config
    recorded = json.loads((folder / "config.json").read_text())["weights_sha256"]
    problems = []
    if counters.get("step") != pointer["step"] or counters.get("epoch") != pointer.get("epoch"):
        problems.append(f"counters are for step {counters.get('step')}, CURRENT says {pointer['step']}")
    if counters.get("weights_sha256") != recorded:
        problems.append("the weights are not the ones saved with these counters")
    if not (folder / OPTIMIZER_FILE).is_file() or file_sha256(folder / OPTIMIZER_FILE) != counters.get("optimizer_sha256"):
        problems.append(f"{OPTIMIZER_FILE} is missing or not the one saved with these counters")
    if problems:
        raise CheckpointError(f"the run state {folder} is inconsistent: {'; '.join(problems)}",
                              hint="it was altered outside llm4seg; start a new run")
    try:
        buffers = load_file(str(folder / OPTIMIZER_FILE))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{folder / OPTIMIZER_FILE} cannot be read ({exc})",
                              hint="the file is corrupt; start a new run") from exc
    return SavedState(model, buffers, counters)


def restore_optimizer(model: torch.nn.Module, optimizer: torch.optim.Optimizer, buffers: dict[str, torch.Tensor]) -> None:
    """Put saved momentum buffers back; a CheckpointError when they name parameters the model lacks."""
    params = dict(model.named_parameters())
    for name, buf in buffers.items():
        if name not in params:
            raise CheckpointError(f"the saved optimizer state names parameter {name!r} the model does not have",
                                  hint="resume with the same model settings the run was started with")
        optimizer.state[params[name]]["momentum_buffer"] = buf.to(params[name].device)


def publish(state_dir: Path, pointer: dict[str, Any], checkpoints: Path) -> None:
    """checkpoints/last and checkpoints/best become copies of the current state's folders."""
    _publish_one(state_dir / pointer["state"], checkpoints / "last")
    if pointer.get("best_state"):
        _publish_one(state_dir / pointer["best_state"], checkpoints / "best")


def _publish_one(source: Path, target: Path) -> None:
    tmp = fresh_folder(target.parent, target.name)
    for name in ("model.safetensors", "config.json"):
        try:
            os.link(source / name, tmp / name)  # state files are never rewritten in place
        except OSError:
            shutil.copy2(source / name, tmp / name)
    swap_folder(tmp, target, label="published")
