"""Batch transforms on the device: the paper's random rot90 and flips, and normalisation."""

from __future__ import annotations

import torch

from llm4seg.contract import FrameContract


def augment_batch(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rot90 (k in 0..3), horizontal and vertical flip, drawn per sample on the CPU generator.

    images (B, C, H, W) and masks (B, 1, H, W), square, any dtype, any device.
    """
    b = images.shape[0]
    params = torch.randint(0, 4, (b, 3), generator=generator)  # k, hflip (0/1), vflip (0/1)
    params[:, 1:] %= 2
    out_i, out_m = torch.empty_like(images), torch.empty_like(masks)
    for i, (k, hf, vf) in enumerate(params.tolist()):
        img, msk = images[i], masks[i]
        if k:
            img, msk = torch.rot90(img, k, (1, 2)), torch.rot90(msk, k, (1, 2))
        dims = [d for d, flag in ((2, hf), (1, vf)) if flag]
        if dims:
            img, msk = torch.flip(img, dims), torch.flip(msk, dims)
        out_i[i], out_m[i] = img, msk
    return out_i, out_m


def normalise(images_u8: torch.Tensor, contract: FrameContract, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, C, H, W) -> the model's input: a * x + b per channel, (a, b) from the frame contract
    (llm4seg.contract: scale, mean/std, the authors' extra /255 when asked)."""
    a, b = (torch.from_numpy(v).to(device=images_u8.device, dtype=dtype).view(1, -1, 1, 1) for v in contract.affine())
    return images_u8.to(dtype) * a + b
