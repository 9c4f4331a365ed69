"""`train(cfg)`: the library entry point behind `llm4seg train` (and torchrun)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

from llm4seg.errors import ConfigError, Llm4SegError
from llm4seg.training import distributed as dist_utils
from llm4seg.training.config import TrainConfig
from llm4seg.training.loop import Trainer
from llm4seg.training.run_folder import prepare_run, saved_config, write_run_config


def _file_logging(run_dir: Path) -> logging.Handler:
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("llm4seg")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def _undo_new_run(root: Path, created: bool, handler: logging.Handler | None) -> None:
    """A new run refused at setup (missing data folder, no masks/, unknown split, bad pairs) leaves
    nothing behind: the corrected command then starts normally, without --resume."""
    import shutil

    if handler is not None:
        logging.getLogger("llm4seg").removeHandler(handler)
        handler.close()
    if created:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in ("config.json", "train.log"):
        (root / name).unlink(missing_ok=True)


@contextlib.contextmanager
def run_folder_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on the run folder for the whole run (`.NAME.lock` beside it, so the folder
    itself stays empty until config.json): a second writer is refused, not interleaved. The OS
    releases it when the holder dies. No lock where fcntl is missing (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{out} is in use by another llm4seg process (training or resuming it)",
                              hint="wait for it to finish, or pass another --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def train(cfg: TrainConfig, resume: bool = False, progress_factory: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns a summary with the best epoch and final metrics."""
    if dist_utils.is_rank_zero_process():
        with run_folder_lock(Path(cfg.out).absolute()):
            return _train(cfg, resume, progress_factory)
    return _train(cfg, resume, progress_factory)


def _train(cfg: TrainConfig, resume: bool, progress_factory: Callable[..., Any] | None) -> dict[str, Any]:
    world = dist_utils.init_world(cfg.device)
    error: BaseException | None = None
    created = not resume and not Path(cfg.out).exists()
    if world.is_main:  # one process checks and writes the run folder; the others then read it
        try:
            cfg = prepare_run(cfg, resume)
        except Exception as exc:  # noqa: BLE001  re-raised below, after telling the other ranks
            error = exc
    if world.main_failed(error is not None):
        dist_utils.shutdown(world)
        if error is not None:
            raise error
        raise ConfigError(f"rank 0 refused the run folder {cfg.out}", hint="see rank 0's error above")
    if not world.is_main and resume:
        cfg = saved_config(cfg)
    handler = _file_logging(Path(cfg.out)) if world.is_main else None
    try:
        try:
            trainer = Trainer(cfg, world)
            trainer.setup(resume)
        except Llm4SegError:
            if world.is_main and not resume:
                _undo_new_run(Path(cfg.out), created, handler)
                handler = None
            raise
        if world.is_main:
            write_run_config(cfg, trainer)
            logging.getLogger("llm4seg.train").info(
                "start: %d train / %d val images, %d steps per epoch, device %s, world %d, resumed from %s",
                len(trainer.train_set), len(trainer.val_set), trainer.steps_per_epoch, trainer.device, world.size,
                (trainer.resumed_from or {}).get("state", "nothing (new start)"))
            logging.getLogger("llm4seg.train").info("masks: %s", (trainer.train_set.mask_encoding or {}).get("rule", "synthetic"))
        if progress_factory is not None and world.is_main:
            with progress_factory(trainer) as hooks:
                return trainer.run(on_epoch=hooks.on_epoch, on_step=hooks.on_step)
        summary = trainer.run()
        return summary if world.is_main else None  # one summary per job (rank 0's), not one per process
    finally:
        if handler is not None:
            logging.getLogger("llm4seg").removeHandler(handler)
            handler.close()
        dist_utils.shutdown(world)
