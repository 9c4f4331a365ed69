"""Validation Dice and IoU computed on the device in one pass (no per-image host round trip).

Same definitions and empty-mask rule as llm4seg.metrics; a test checks they agree.
"""

from __future__ import annotations

import math

import torch

from llm4seg.contract import FrameContract
from llm4seg.data.augment import normalise


def dice_iou(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pred, target bool (N, H, W) -> per-image dice, iou (float64, N)."""
    p, t = pred.flatten(1), target.flatten(1)
    tp = (p & t).sum(1).double()
    fp = (p & ~t).sum(1).double()
    fn = (~p & t).sum(1).double()
    empty = (tp + fp + fn) == 0
    dice = torch.where(empty, torch.ones_like(tp), 2 * tp / (2 * tp + fp + fn).clamp_min(1))
    iou = torch.where(empty, torch.ones_like(tp), tp / (tp + fp + fn).clamp_min(1))
    return dice, iou


@torch.inference_mode()
def validate_on_device(model, images_u8: torch.Tensor, masks: torch.Tensor, batch_size: int = 32,
                       amp: bool = False) -> dict[str, float]:
    """images uint8 (N, 3, S, S) and masks bool (N, 1, S, S), both on the model's device."""
    contract = FrameContract.from_model_config(model.config)
    # prob > threshold <=> logit > log(t / (1 - t)) (0 for the default 0.5)
    threshold_logit = math.log(contract.threshold / (1 - contract.threshold))
    was_training = model.training
    model.eval()
    dices, ious = [], []
    for i in range(0, len(images_u8), batch_size):
        x = normalise(images_u8[i:i + batch_size], contract)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp and x.device.type == "cuda"):
            logits = model(x)
        d, j = dice_iou(logits[:, 0].float() > threshold_logit, masks[i:i + batch_size, 0])
        dices.append(d)
        ious.append(j)
    model.train(was_training)
    return {"val_dice": float(torch.cat(dices).mean()), "val_iou": float(torch.cat(ious).mean())}
