"""DeployNet: the checkpoint's model rebuilt for export (folded BN, folded LLM block, sigmoid)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llm4seg.export.fold_cnn import folded_copies
from llm4seg.export.fold_llm import FoldedLLMBlock


@dataclass
class FoldReport:
    """What the deploy fold did: BatchNorms folded into convolutions, those kept, the LLM block's fold."""

    bn_folded: int
    bn_kept: int
    llm_block: str  # "folded" or "none"


class DeployNet(nn.Module):
    """image (B, 3, S, S) float32, normalised -> probability (B, 1, S, S) float32."""

    def __init__(self, model, half: bool = False, native_ops: bool = False, native_attention: bool | None = None) -> None:
        super().__init__()
        self.encoder, self.decoder, folded, kept = folded_copies(model)
        dtype = torch.float16 if half else torch.float32
        self.block = FoldedLLMBlock(model.block, dtype=dtype, native_ops=native_ops,
                                    native_attention=native_attention) if model.block is not None else None
        self.half = half
        if half:
            self.encoder.half()
            self.decoder.half()
        if self.block is None:
            kind = "none"
        else:
            kind = "adapters folded into q/k/v and down_proj" if self.block.fold else "norm gains folded (D <= C: adapters kept)"
        self.report = FoldReport(folded, kept, kind)
        self.eval()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image (N, C, S, S), normalised -> foreground probability (N, 1, S, S), sigmoid in FP32."""
        x = image.half() if self.half else image
        feats = self.encoder(x)
        if self.block is not None:
            feats[-1] = self.block(feats[-1])
        # The final sigmoid runs in FP32 in both variants.
        return torch.sigmoid(self.decoder(feats).float())
