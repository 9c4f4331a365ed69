"""Augmentation moves image and mask together, covers all eight rot90/flip poses, and normalises."""

from __future__ import annotations

import torch

from llm4seg.contract import FrameContract
from llm4seg.data.augment import augment_batch, normalise


def test_image_and_mask_stay_aligned_and_poses_vary():
    mask = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    mask[:, :, 0:3, 0:2] = 1  # an asymmetric blob, so every pose is distinct
    image = mask.repeat(1, 3, 1, 1) * 200
    out_img, out_mask = augment_batch(image, mask, torch.Generator().manual_seed(0))
    assert torch.equal(out_img[:, :1] // 200, out_mask)
    poses = {tuple(m.flatten().tolist()) for m in out_mask}
    assert len(poses) == 8


def test_normalise_and_paper_double_scaling():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    contract = FrameContract(image_size=2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    y = normalise(x, contract)
    assert torch.allclose(y, torch.full_like(y, 2.0))
    double = FrameContract(image_size=2, mean=(0.5,) * 3, std=(0.25,) * 3, paper_double_scaling=True)
    assert torch.allclose(normalise(x, double), y / 255)
