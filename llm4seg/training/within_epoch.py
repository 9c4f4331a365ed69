"""Saves inside an epoch: what a resume needs to continue at step k of an epoch bit-identically.

The data order and the augmentation draws of an epoch come from one generator seeded by (seed,
epoch) (`loop.epoch_generator`): the permutation is drawn first, then each batch's rot90/flip
parameters. A save after step k records the generator's state at that moment, the steps done and
the running loss sum (its exact float32 value), so the resumed epoch draws what the uninterrupted
one would have drawn and reports the same training loss. Stored as JSON in counters.json (the
generator state as base64 bytes): nothing is pickled.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass
class WithinEpoch:
    """Where a save inside an epoch left it.

    Args:
        epoch: the 0-based epoch being trained.
        steps: steps of that epoch already done.
        loss_sum: the running sum of their losses (float32, exactly).
        generator: the epoch generator's state after those steps, base64.
    """

    epoch: int
    steps: int
    loss_sum: float
    generator: str

    @classmethod
    def capture(cls, epoch: int, steps: int, loss_sum: torch.Tensor, generator: torch.Generator) -> "WithinEpoch":
        """The point after `steps` steps of `epoch`."""
        state = base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii")
        return cls(epoch, steps, float(loss_sum), state)

    def to_dict(self) -> dict[str, Any]:
        """As counters.json holds it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "WithinEpoch | None":
        """The point a counters.json recorded, or None (a save at an epoch's end)."""
        return cls(**data) if data else None

    def generator_state(self) -> torch.Tensor:
        """The generator state to restore (uint8 tensor)."""
        raw = bytearray(base64.b64decode(self.generator))
        return torch.frombuffer(raw, dtype=torch.uint8).clone()

    def loss_tensor(self, device: torch.device) -> torch.Tensor:
        """The running loss sum as the float32 tensor the epoch keeps."""
        return torch.tensor(self.loss_sum, dtype=torch.float32, device=device)
