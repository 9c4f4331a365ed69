"""TrainConfig: every setting of a run, saved in the run folder so a resume needs nothing else."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llm4seg.errors import ConfigError


def _finite(value: Any) -> bool:
    """A real, finite number (not NaN or inf, not a bool or a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrainConfig:
    """Everything a training run needs (the paper's protocol by default: SGD 0.01/0.9/1e-4, poly
    decay, batch 8, 300 epochs, 0.5*BCE + Dice), saved in the run's config.json.
    """

    out: str = "runs/llm4seg"
    model: str = "llm4seg"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    data: str | None = None            # None: the built-in synthetic set
    split: str | None = None           # e.g. train1 (BUSI); None: seeded split of the whole folder
    val_split: str | None = None       # e.g. val1; default derived from split (trainK -> valK)
    synthetic_count: int = 200
    image_size: int = 256
    epochs: int = 300
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    val_every: int = 1
    seed: int = 0
    device: str = "auto"
    amp: bool = True                   # CUDA only: bf16 autocast
    channels_last: bool = True         # CUDA only
    compile: bool = False
    step_mode: str = "eager"           # "graph": the whole step as one CUDA graph (see graphed_step.py)
    paper_double_scaling: bool = False
    skip_bad: bool = False
    checkpoint_every_s: float = 60.0   # last/best/resume state written at most this often, and at the end

    def validate(self) -> None:
        """Refuse values no run can use (ConfigError naming the field, its value and what is expected)."""
        checks = [
            ("epochs", self.epochs >= 1, "at least 1"), ("batch_size", self.batch_size >= 2, "at least 2 (BatchNorm)"),
            ("lr", _finite(self.lr) and self.lr > 0, "a finite positive number"),
            ("momentum", _finite(self.momentum) and 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", _finite(self.weight_decay) and self.weight_decay >= 0, "finite and >= 0"),
            ("poly_power", _finite(self.poly_power) and self.poly_power > 0, "finite and > 0"),
            ("checkpoint_every_s", _finite(self.checkpoint_every_s) and self.checkpoint_every_s >= 0, "finite and >= 0"),
            ("val_every", self.val_every >= 1, "at least 1"),
            ("image_size", self.image_size % 16 == 0 and self.image_size >= 32, "a multiple of 16, >= 32"),
        ]
        checks.append(("step_mode", self.step_mode in ("eager", "graph"), "eager or graph"))
        checks.append(("step_mode", not (self.step_mode == "graph" and self.compile),
                       "eager with --compile (a graph-captured step and torch.compile do not combine)"))
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not valid", hint=f"{name} must be {expected}")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """The config `to_dict` wrote (keys of older versions that no longer exist are dropped)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
