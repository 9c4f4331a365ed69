"""The paper's loss: 0.5 * BCE + soft Dice (per-sample Dice, averaged over the batch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMOOTH = 1e-5


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits, target (B, 1, H, W); computed in float32 whatever the autocast dtype."""
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits).flatten(1)
    flat = target.flatten(1)
    dice = (2 * (prob * flat).sum(1) + SMOOTH) / (prob.sum(1) + flat.sum(1) + SMOOTH)
    return 0.5 * bce + (1 - dice.mean())
