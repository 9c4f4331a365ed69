"""The run folder: checked and claimed before training starts, read back by resume.

config.json is written first, so a folder is either empty (or holds only leftovers of an
interrupted write) or a run that `--resume` can continue; any other non-empty folder is refused
rather than written into.
"""

from __future__ import annotations

import json
from pathlib import Path

from llm4seg.errors import CheckpointError, ConfigError
from llm4seg.fileio import remove_leftovers, write_json_atomic
from llm4seg.training.config import TrainConfig
from llm4seg.training.loop import Trainer
from llm4seg.training.paths import RunPaths

RUN_FORMAT = "llm4seg-run"


def _is_run(config_path: Path) -> bool:
    try:
        data = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and (data.get("format") == RUN_FORMAT or "train" in data)


def prepare_run(cfg: TrainConfig, resume: bool) -> TrainConfig:
    """Check the run folder and write (or, resuming, read back) its config.json before anything else,
    so a folder is either empty or a run that `--resume` can continue."""
    paths = RunPaths(Path(cfg.out))
    if paths.root.exists() and not paths.root.is_dir():
        raise ConfigError(f"--out {paths.root} is a file", hint="pass a folder for the run")
    if resume:
        if not _is_run(paths.config):
            raise CheckpointError(f"{paths.root} is not an llm4seg run folder (no run config.json)",
                                  hint="pass the --out folder of an earlier `llm4seg train`, or start without --resume")
        remove_leftovers(paths.root)
        return saved_config(cfg)
    if paths.root.is_dir():
        if _is_run(paths.config):
            raise ConfigError(f"{paths.root} already holds a run",
                              hint=f"continue it with `llm4seg train --resume {paths.root}`, or pass another --out")
        remove_leftovers(paths.root)
        if any(paths.root.iterdir()):
            raise ConfigError(f"--out {paths.root} is not empty and is not an llm4seg run",
                              hint="pass a new or empty folder; llm4seg does not write into other folders")
    cfg.validate()
    write_json_atomic(paths.config, {"format": RUN_FORMAT, "train": cfg.to_dict()})
    return cfg


def saved_config(cfg: TrainConfig) -> TrainConfig:
    """The settings a run was started with (resume takes every setting from the run folder)."""
    path = RunPaths(Path(cfg.out)).config
    try:
        saved = TrainConfig.from_dict(json.loads(path.read_text())["train"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} cannot be read as a run config ({exc})",
                              hint="the run folder was damaged; start a new run with another --out") from exc
    saved.out = cfg.out
    return saved


def write_run_config(cfg: TrainConfig, trainer: Trainer) -> None:
    """Write the run's config.json: training and model settings, data sizes, versions (atomically)."""
    write_json_atomic(trainer.paths.config, {
        "format": RUN_FORMAT,
        "train": cfg.to_dict(),
        "model": trainer.model.config.to_dict(),
        "data": {"train": trainer.train_set.name, "val": trainer.val_set.name,
                 "n_train": len(trainer.train_set), "n_val": len(trainer.val_set),
                 "skipped": trainer.train_set.skipped,
                 "mask_encoding": trainer.train_set.mask_encoding,
                 "val_mask_encoding": trainer.val_set.mask_encoding},
        "world_size": trainer.world.size,
        "device": str(trainer.device),
    })
