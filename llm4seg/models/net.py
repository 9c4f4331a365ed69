"""LLM4SegNet: CMUNeXt encoder -> (LLM block at the bottleneck) -> CMUNeXt decoder."""

from __future__ import annotations

import torch
from torch import nn

from llm4seg.llm.spec import LayerSpec
from llm4seg.models.cmunext import CMUNeXtDecoder, CMUNeXtEncoder
from llm4seg.models.config import ModelConfig
from llm4seg.models.llm_block import LLMBlock


class LLM4SegNet(nn.Module):
    """image (B, in_ch, H, W), normalised -> logits (B, num_classes, H, W)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = CMUNeXtEncoder(config.in_channels, config.dims, config.depths, config.kernels)
        self.block: LLMBlock | None = None
        if config.block is not None:
            b = config.block
            self.block = LLMBlock(
                config.dims[-1], LayerSpec.from_dict(b.spec), config.grid_hw,
                attention=b.attention, positions=b.positions, trainable=b.trainable,
            )
        self.decoder = CMUNeXtDecoder(config.dims, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (N, C, S, S), normalised -> logits (N, num_classes, S, S) (no sigmoid)."""
        feats = self.encoder(x)
        if self.block is not None:
            feats[-1] = self.block(feats[-1])
        return self.decoder(feats)

    def frozen_state_dict(self) -> dict[str, torch.Tensor]:
        """The LLM layer's tensors when frozen (they come from the LLM, not from training)."""
        if self.block is None or self.block.trainable:
            return {}
        return {f"block.layer.{k}": v for k, v in self.block.layer.state_dict().items()}

    def param_counts(self) -> dict[str, int]:
        """{'total', 'trainable', 'frozen'} parameter counts."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable, "frozen": total - trainable}
