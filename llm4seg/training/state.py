"""Resume state: optimizer buffers in safetensors, counters in JSON. Nothing is pickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from llm4seg._optional import require
from llm4seg.errors import CheckpointError
from llm4seg.fileio import atomic_path, write_json_atomic

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


def save_resume_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    save_file = require("safetensors.torch").save_file
    names = {id(p): n for n, p in model.named_parameters()}
    buffers = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buffers[names[id(p)]] = buf.detach().cpu().contiguous()
    with atomic_path(folder / OPTIMIZER_FILE) as tmp:
        save_file(buffers, str(tmp))
    write_json_atomic(folder / STATE_FILE, state)


def load_resume_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    load_file = require("safetensors.torch").load_file
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        buffers = load_file(str(folder / OPTIMIZER_FILE))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"resume state in {folder} is missing or corrupt ({exc})",
                              hint="start a new run, or resume from a run folder written by `llm4seg train`") from exc
    params = dict(model.named_parameters())
    for name, buf in buffers.items():
        if name not in params:
            raise CheckpointError(f"resume state names parameter {name!r} the model does not have",
                                  hint="resume with the same model settings the run was started with")
        optimizer.state[params[name]]["momentum_buffer"] = buf.to(params[name].device)
    return state
