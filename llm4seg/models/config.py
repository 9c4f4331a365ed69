"""Model configuration: what a checkpoint's config.json holds, and what create_model resolves."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from llm4seg.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INITS = ("pretrained", "random")
ATTENTIONS = ("causal", "bidirectional")


@dataclass
class BlockConfig:
    """The LLM block at the bottleneck. `spec` and `layer` are filled in once resolved."""

    source: str = "smollm2"
    layer: int | None = None
    init: str = "pretrained"
    trainable: bool = False
    attention: str = "causal"
    positions: str = "rope1d"
    spec: dict[str, Any] | None = None

    def validate(self) -> None:
        """Refuse unknown init, attention, position or layer options with a ConfigError naming them."""
        from llm4seg.models.rope import POSITION_MODES

        for name, value, allowed in (
            ("init", self.init, INITS),
            ("attention", self.attention, ATTENTIONS),
            ("positions", self.positions, POSITION_MODES),
        ):
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not valid", hint=f"choose one of {', '.join(allowed)}")


@dataclass
class ModelConfig:
    """A model's architecture and its data contract (image size, channels, mean/std, threshold),
    saved with every checkpoint and copied into every export manifest. `block` is the LLM layer
    (None: the CMUNeXt baseline).
    """

    name: str = "cmunext"
    in_channels: int = 3
    num_classes: int = 1
    dims: tuple[int, ...] = (16, 32, 128, 160, 256)
    depths: tuple[int, ...] = (1, 1, 1, 3, 1)
    kernels: tuple[int, ...] = (3, 3, 7, 7, 7)
    image_size: int = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    # The authors' release divides the normalised image by 255 once more; kept only on request.
    paper_double_scaling: bool = False
    threshold: float = 0.5
    block: BlockConfig | None = field(default_factory=BlockConfig)

    def validate(self) -> None:
        """Refuse inconsistent stage lists, sizes or normalisation values (ConfigError naming the field)."""
        n = len(self.dims)
        if not (len(self.depths) == len(self.kernels) == n):
            raise ConfigError(
                f"dims, depths and kernels must have the same length, got {n}, {len(self.depths)}, {len(self.kernels)}",
                hint="give one depth and one kernel per stage",
            )
        stride = 2 ** (n - 1)
        if self.image_size % stride:
            raise ConfigError(
                f"image_size={self.image_size} is not a multiple of {stride}",
                hint=f"use a multiple of {stride}, e.g. 256",
            )
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(
                f"mean/std have {len(self.mean)}/{len(self.std)} values for {self.in_channels} channels",
                hint="give one mean and one std per input channel",
            )
        if self.block is not None:
            self.block.validate()

    @property
    def grid_hw(self) -> tuple[int, int]:
        """The bottleneck's (height, width): image_size / 2**(stages - 1), 16 x 16 at 256 px."""
        side = self.image_size // 2 ** (len(self.dims) - 1)
        return side, side

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data (tuples as lists)."""
        data = asdict(self)
        for key in ("dims", "depths", "kernels", "mean", "std"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """The config `to_dict` wrote; unknown keys are refused, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}", hint=f"known keys: {sorted(known)}")
        data = dict(data)
        block = data.pop("block", None)
        for key in ("dims", "depths", "kernels", "mean", "std"):
            if key in data:
                data[key] = tuple(data[key])
        cfg = cls(**data, block=BlockConfig(**block) if block else None)
        return cfg
