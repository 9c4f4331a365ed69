"""The training run: top to bottom, one epoch at a time, resumable at every epoch boundary.

All randomness after model creation comes from a generator seeded by (seed, epoch), so a run
resumed from epoch k's state reproduces the uninterrupted run exactly (on the same device).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from llm4seg.contract import FrameContract
from llm4seg.data.augment import augment_batch, normalise
from llm4seg.data.datasets import train_val_datasets
from llm4seg.errors import ConfigError, TrainingError
from llm4seg.fileio import atomic_path
from llm4seg.models.registry import create_model
from llm4seg.training import distributed as dist_utils
from llm4seg.training.config import TrainConfig
from llm4seg.training.curves import plot_curves
from llm4seg.training.graphed_step import make_step
from llm4seg.training.losses import bce_dice_loss
from llm4seg.training.paths import RunPaths
from llm4seg.training.state import load_state, publish, read_pointer, restore_optimizer, save_state
from llm4seg.training.val_metrics import validate_on_device
from llm4seg.training.within_epoch import WithinEpoch

log = logging.getLogger("llm4seg.train")


def non_finite_loss(where: str, lr: float) -> TrainingError:
    """The error for a NaN/inf loss: training stops before it saves NaN weights."""
    return TrainingError(f"the training loss became non-finite (NaN or inf) {where}; nothing from that epoch was saved",
                         hint=f"lower --lr (now {lr:g}), check the images and masks for NaN/inf values, "
                         "then resume from the last saved state (llm4seg train --resume RUN) or start again")


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; a ConfigError when CUDA is asked for and missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available", hint="use --device cpu or auto")
    return torch.device(name)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The seeded generator of an epoch's order and augmentations: a resumed run replays it exactly."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def poly_lr(base: float, step: int, total: int, power: float) -> float:
    """Poly decay: base * (1 - step / total) ** power."""
    return base * (1 - step / total) ** power


class Trainer:
    """One training run: set up (data, model, optimizer; resumed from the run folder's state when
    asked), then `run` the epochs, validating and publishing best/last checkpoints atomically.

    Args:
        cfg: the run's settings.
        world: this process's place in a torchrun job.
        progress: unused, kept for callers that pass a progress object.
    """

    def __init__(self, cfg: TrainConfig, world: dist_utils.World, progress: Any = None) -> None:
        cfg.validate()
        self.cfg, self.world, self.progress = cfg, world, progress
        self.paths = RunPaths(Path(cfg.out))
        if cfg.batch_size % world.size:
            raise ConfigError(f"--batch-size {cfg.batch_size} does not split over {world.size} processes",
                              hint=f"use a multiple of {world.size} (the batch is the global one, as in the paper)")
        self.device = world.device if world.size > 1 else pick_device(cfg.device)
        self.cuda = self.device.type == "cuda"

    # -- setup -----------------------------------------------------------------------------
    def setup(self, resume: bool) -> None:
        """Load the data, build the model and optimizer, and restore the saved state when `resume`."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.train_set, self.val_set = train_val_datasets(
            cfg.data, cfg.split, cfg.val_split, cfg.image_size, seed=cfg.seed,
            skip_bad=cfg.skip_bad, synthetic_count=cfg.synthetic_count)
        overrides = dict(cfg.model_overrides, image_size=cfg.image_size,
                         paper_double_scaling=cfg.paper_double_scaling)
        # Resume continues from the last complete state; a run killed before its first save starts over.
        pointer = read_pointer(self.paths.state) if resume else None
        saved = load_state(self.paths.state, pointer) if pointer else None
        self.resumed_from = pointer
        self.model = saved.model if saved else create_model(cfg.model, **overrides)
        self.model.to(self.device).train()
        self.contract = FrameContract.from_model_config(self.model.config)  # how images become inputs
        if self.cuda and cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        params = [p for p in self.model.parameters() if p.requires_grad]  # frozen layer: no optimizer state
        self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.state = {"epoch": 0, "step": 0, "best_iou": -1.0, "best_epoch": None, "best_state": None}
        self.within: WithinEpoch | None = None  # set when the saved state is inside an epoch
        if saved:
            restore_optimizer(self.model, self.optimizer, saved.buffers)
            self.state = {k: saved.counters.get(k) for k in self.state}
            self.within = WithinEpoch.from_dict(saved.counters.get("within_epoch"))
            if self.world.is_main:
                publish(self.paths.state, pointer, self.paths.checkpoints)
        if cfg.step_mode == "graph" and self.world.size > 1:
            raise ConfigError("--step-mode graph runs in one process", hint="use --step-mode eager under torchrun")
        self.forward_model = dist_utils.wrap(self.model, self.world)
        if cfg.compile:
            self.forward_model = torch.compile(self.forward_model)
        # Decode once, keep uint8 tensors on the device; augmentation happens there too.
        self.images = torch.from_numpy(self.train_set.images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.masks = torch.from_numpy(self.train_set.masks)[:, None].to(self.device)
        self.val_images = torch.from_numpy(self.val_set.images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.val_masks = torch.from_numpy(self.val_set.masks)[:, None].to(self.device)
        self.best_snapshot: dict[str, torch.Tensor] | None = None
        self.last_save = time.monotonic()
        self.per_rank_batch = self.cfg.batch_size // self.world.size
        # Full batches only (BatchNorm and DDP need them); the remainder differs every epoch.
        self.steps_per_epoch = (len(self.train_set) // self.world.size) // self.per_rank_batch
        if self.steps_per_epoch < 1:
            raise ConfigError(f"{len(self.train_set)} training images cannot fill one batch of {cfg.batch_size}",
                              hint="lower --batch-size or add data")
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.graphed = make_step(cfg.step_mode, self)  # after the optimizer state is restored

    # -- one epoch -------------------------------------------------------------------------
    def batches(self, epoch: int, start: int = 0, generator_state: torch.Tensor | None = None):
        """This rank's batches of epoch `epoch` (index tensors) with the epoch's generator, from step
        `start` (with the generator's state saved there: a resume inside the epoch)."""
        g = epoch_generator(self.cfg.seed, epoch)
        perm = torch.randperm(len(self.train_set), generator=g)
        if generator_state is not None:
            g.set_state(generator_state)
        n_rank = len(perm) // self.world.size
        mine = perm[self.world.rank::self.world.size][:n_rank]
        for s in range(start, self.steps_per_epoch):
            yield mine[s * self.per_rank_batch:(s + 1) * self.per_rank_batch].to(self.device), g

    def resume_point(self) -> tuple[int, int]:
        """(epochs done, optimizer steps done in the next epoch): where this run goes on from (0, 0 new)."""
        epoch = self.state["epoch"]
        return epoch, (self.within.steps if self.within and self.within.epoch == epoch else 0)

    def train_epoch(self, epoch: int, on_step=None) -> dict[str, float]:
        """One epoch of SGD; `on_step` is called after each step.

        Returns:
            {'train_loss', 'it_per_s', ...} for the epoch's metrics row.
        """
        cfg, model = self.cfg, self.forward_model
        model.train()
        point, self.within = (self.within if self.within and self.within.epoch == epoch else None), None
        total = point.loss_tensor(self.device) if point else 0.0
        n = start = point.steps if point else 0
        t0 = time.perf_counter()
        for idx, g in self.batches(epoch, start, point.generator_state() if point else None):
            x, y = augment_batch(self.images[idx], self.masks[idx], g)
            x = normalise(x, self.contract)
            if self.cuda and cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            lr = poly_lr(cfg.lr, self.state["step"], self.total_steps, cfg.poly_power)
            if self.graphed is not None:
                loss = self.graphed(x, y, lr)
            else:
                loss = self._eager_step(model, x, y, lr)
            self.state["step"] += 1
            if not self.cuda and not bool(torch.isfinite(loss.detach())):  # on the CPU a check costs nothing
                raise non_finite_loss(f"at step {self.state['step']} (epoch {epoch + 1})", cfg.lr)
            total = total + loss.detach()  # stays on the device: no sync per step
            n += 1
            if n < self.steps_per_epoch and self._save_due():  # an epoch's end saves with its metrics row
                self._save_within_epoch(WithinEpoch.capture(epoch, n, self._finite(total, epoch, n), g))
            if on_step:
                on_step()
        seconds = time.perf_counter() - t0
        self._finite(total, epoch, n)  # on a GPU checked once per epoch (one sync), before any save
        return {"train_loss": float(total) / max(n, 1), "it_per_s": (n - start) / seconds, "epoch_s": seconds, "lr": lr}

    def _finite(self, total: torch.Tensor, epoch: int, n: int) -> torch.Tensor:
        if not math.isfinite(float(total)):
            raise non_finite_loss(f"in epoch {epoch + 1} (steps {self.state['step'] - n + 1}-{self.state['step']})",
                                  self.cfg.lr)
        return total

    def _save_due(self) -> bool:
        """A timed save inside an epoch (one process only: DDP ranks save at epoch ends)."""
        return self.world.size == 1 and time.monotonic() - self.last_save >= self.cfg.checkpoint_every_s

    def _save_within_epoch(self, point: WithinEpoch) -> None:
        """Save the state after `point.steps` steps of the epoch: a kill now loses no more than that."""
        self._save({"epoch": self.state["epoch"], "epoch_step": point.steps}, within=point)

    def _eager_step(self, model, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda and self.cfg.amp):
            logits = model(x)
        loss = bce_dice_loss(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def validate(self) -> dict[str, float]:
        """Validation Dice and IoU (per-image means) of the current model."""
        return validate_on_device(self.model, self.val_images, self.val_masks, amp=self.cfg.amp)

    # -- the run ---------------------------------------------------------------------------
    def run(self, on_epoch=None, on_step=None) -> dict[str, Any]:
        """Train the remaining epochs, validating every `val_every`; each epoch's state is saved so a
        killed run resumes where it stopped.

        Returns:
            The run's summary (best validation IoU and its epoch, the last row, image counts, skipped items).
        """
        cfg = self.cfg
        rows = self._read_metrics()[: self.state["epoch"]]
        for epoch in range(self.state["epoch"], cfg.epochs):
            row: dict[str, Any] = {"epoch": epoch + 1, **self.train_epoch(epoch, on_step)}
            if self.world.is_main and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                row.update(self.validate())
            self.state["epoch"] = epoch + 1
            if self.world.is_main:
                self._end_epoch(row, rows)
            self.world.barrier()
            if on_epoch:
                on_epoch(row)
        if self.world.is_main:
            plot_curves(rows, self.paths.root / "curves.png")
        return {"epochs": cfg.epochs, "best_epoch": self.state["best_epoch"], "best_val_iou": self.state["best_iou"],
                "last": rows[-1] if rows else {}, "run_dir": str(self.paths.root),
                "train_images": len(self.train_set), "val_images": len(self.val_set),
                "masks": (self.train_set.mask_encoding or {}).get("rule", "synthetic (generated boolean masks)"),
                "resumed_from": (self.resumed_from or {}).get("state"),
                "skipped": {**self.train_set.skipped, **self.val_set.skipped},
                "val_split": self.val_set.name.split(":", 1)[1] if self.cfg.split else None}

    def _end_epoch(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        if row.get("val_iou") is not None and row["val_iou"] > self.state["best_iou"]:
            self.state["best_iou"], self.state["best_epoch"] = row["val_iou"], row["epoch"]
            self.best_snapshot = self._trainable_snapshot()
            self.best_row = row
        rows.append(row)
        self._write_metrics(rows)
        log.info("epoch %d %s", row["epoch"], json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
        # Saving a 1B-shaped model every epoch would cost minutes over 300 epochs: save on an interval.
        final = row["epoch"] == self.cfg.epochs
        if final or time.monotonic() - self.last_save >= self.cfg.checkpoint_every_s:
            self._save({"epoch": row["epoch"], **_metrics_of(row)})
        if row["epoch"] % 10 == 0:
            plot_curves(rows, self.paths.root / "curves.png")

    def _trainable_snapshot(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen layer (which never changes), copied off the live weights."""
        frozen = set(self.model.frozen_state_dict())
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if k not in frozen}

    def _save(self, extra: dict[str, Any], within: WithinEpoch | None = None) -> None:
        # One atomic unit (see training/state.py): best, last weights, optimizer and counters.
        # A finite loss can still be followed by an update that overflows: never save such weights.
        if not all(bool(torch.isfinite(t).all()) for t in self.model.state_dict().values() if t.is_floating_point()):
            epoch = self.state["epoch"] + (1 if within else 0)
            raise TrainingError(f"the weights became non-finite (NaN or inf) at step {self.state['step']} (epoch {epoch}) "
                                "although the loss was finite; nothing was saved",
                                hint=non_finite_loss("", self.cfg.lr).hint)
        best = None
        if self.best_snapshot is not None:
            best = (self.best_snapshot, {"epoch": self.best_row["epoch"], **_metrics_of(self.best_row)})
        counters = {**self.state, "within_epoch": within.to_dict() if within else None}
        pointer = save_state(self.paths.state, self.model, self.optimizer, counters, extra, best)
        self.state["best_state"] = pointer["best_state"]
        self.best_snapshot = None
        publish(self.paths.state, pointer, self.paths.checkpoints)
        self.last_save = time.monotonic()

    def _write_metrics(self, rows: list[dict[str, Any]]) -> None:
        # Rows past the saved state are re-run (and rewritten) by a resume.
        with atomic_path(self.paths.metrics) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def _read_metrics(self) -> list[dict[str, Any]]:
        text = self.paths.metrics.read_text() if self.paths.metrics.is_file() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _metrics_of(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k.startswith("val_") or k == "train_loss"}


__all__ = ["RunPaths", "Trainer", "TrainConfig"]
