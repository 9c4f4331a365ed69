"""Where a run folder keeps its files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunPaths:
    """Where a run folder keeps its files."""

    root: Path

    @property
    def config(self) -> Path:
        """The run's config.json (training and model settings, data, versions)."""
        return self.root / "config.json"

    @property
    def metrics(self) -> Path:
        """metrics.jsonl: one JSON line per epoch."""
        return self.root / "metrics.jsonl"

    @property
    def best(self) -> Path:
        """The checkpoint with the best validation IoU so far."""
        return self.root / "checkpoints" / "best"

    @property
    def last(self) -> Path:
        """The checkpoint of the last finished epoch."""
        return self.root / "checkpoints" / "last"

    @property
    def state(self) -> Path:
        """The resumable training state (optimizer, epoch, RNG) folder."""
        return self.root / "state"

    @property
    def checkpoints(self) -> Path:
        """The folder holding best/ and last/."""
        return self.root / "checkpoints"


__all__ = ["RunPaths"]
