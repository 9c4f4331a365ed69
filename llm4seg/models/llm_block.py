"""LLMBlock: bottleneck tokens -> Linear(C->D) -> one decoder layer -> Linear(D->C)."""

from __future__ import annotations

import torch
from torch import nn

from llm4seg.llm.spec import LayerSpec
from llm4seg.models.decoder_layer import DecoderLayer
from llm4seg.models.rope import rope_tables


class LLMBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W). Tokens are the H*W positions in raster order."""

    def __init__(self, channels: int, spec: LayerSpec, grid_hw: tuple[int, int],
                 attention: str = "causal", positions: str = "rope1d", trainable: bool = False) -> None:
        super().__init__()
        self.spec, self.positions, self.causal = spec, positions, attention == "causal"
        self.adapter_in = nn.Linear(channels, spec.hidden_size)
        self.layer = DecoderLayer(spec)
        self.adapter_out = nn.Linear(spec.hidden_size, channels)
        self.set_trainable(trainable)
        cos, sin = rope_tables(spec, *grid_hw, positions)
        # Derived from the spec, so not saved: checkpoints hold only learned or frozen weights.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.grid_hw = tuple(grid_hw)

    def set_trainable(self, trainable: bool) -> None:
        """Freeze (the paper's default) or unfreeze the LLM layer's weights; the adapters stay trainable."""
        self.trainable = trainable
        for p in self.layer.parameters():
            p.requires_grad_(trainable)

    def _tables(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (h, w) == self.grid_hw:
            return self.rope_cos, self.rope_sin
        cos, sin = rope_tables(self.spec, h, w, self.positions)
        return cos.to(self.rope_cos.device), sin.to(self.rope_sin.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck (B, C, H, W) -> H*W tokens -> Linear(C->D) -> LLM layer -> Linear(D->C) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        tokens = self.adapter_in(x.flatten(2).transpose(1, 2))
        cos, sin = self._tables(h, w)
        tokens = self.layer(tokens, cos, sin, causal=self.causal)
        return self.adapter_out(tokens).transpose(1, 2).reshape(b, c, h, w)
