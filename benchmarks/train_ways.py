"""Two ways to run one training step, shared by the CPU benchmark and the GPU script.

authors' way: eager FP32, per-sample augmentation in numpy on the CPU (rot90 + flip, then
ImageNet normalisation and the extra /255), a host-to-device copy per batch.
this project's way: images decoded once and kept as uint8 tensors on the device, batch
augmentation and normalisation there, bf16 autocast + channels_last on CUDA, optional compile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from llm4seg.contract import FrameContract
from llm4seg.data.augment import augment_batch, normalise
from llm4seg.models.config import IMAGENET_MEAN, IMAGENET_STD
from llm4seg.training.losses import bce_dice_loss


@dataclass
class StepTimes:
    way: str
    step_ms: list[float]

    @property
    def median_ms(self) -> float:
        return float(np.median(self.step_ms))

    @property
    def it_per_s(self) -> float:
        return 1000.0 / self.median_ms


def authors_batch(images: np.ndarray, masks: np.ndarray, idx: np.ndarray, rng: np.random.Generator):
    xs, ys = [], []
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    for i in idx:
        img, msk = images[i], masks[i]
        k = rng.integers(0, 4)
        img, msk = np.rot90(img, k), np.rot90(msk, k)
        if rng.random() < 0.5:
            img, msk = img[:, ::-1], msk[:, ::-1]
        if rng.random() < 0.5:
            img, msk = img[::-1], msk[::-1]
        x = ((img.astype(np.float32) / 255.0 - mean) / std) / 255.0
        xs.append(x.transpose(2, 0, 1))
        ys.append(msk[None].astype(np.float32))
    return torch.from_numpy(np.ascontiguousarray(np.stack(xs))), torch.from_numpy(np.ascontiguousarray(np.stack(ys)))


def make_authors_step(model, images, masks, batch, device) -> Callable[[int], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)

    def step(i: int) -> None:
        idx = rng.choice(len(images), batch, replace=False)
        x, y = authors_batch(images, masks, idx, rng)
        loss = bce_dice_loss(model(x.to(device)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def make_project_step(model, images, masks, batch, device, amp: bool, channels_last: bool,
                      graph: bool = False) -> Callable[[int], None]:
    """graph=True: the whole step (forward, backward, SGD) as one CUDA graph (llm4seg's --step-mode graph)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    graphed = None
    if graph:
        from llm4seg.training.graphed_step import GraphedStep

        size = images.shape[1]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        graphed = GraphedStep(model, opt, (batch, 3, size, size), (batch, 1, size, size), device, amp, fmt)
    imgs = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    msks = torch.from_numpy(masks)[:, None].to(device)
    g = torch.Generator().manual_seed(0)
    cuda = device.type == "cuda"
    contract = FrameContract(image_size=images.shape[1], mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def step(i: int) -> None:
        idx = torch.randint(0, len(imgs), (batch,), generator=g).to(device)
        x, y = augment_batch(imgs[idx], msks[idx], g)
        x = normalise(x, contract)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if graphed is not None:
            graphed(x, y, 0.01)
            return
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and cuda):
            logits = model(x)
        loss = bce_dice_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_steps(way: str, step: Callable[[int], None], warmup: int, iterations: int, device) -> StepTimes:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        step(i)
    sync()
    times = []
    for i in range(iterations):
        t0 = time.perf_counter()
        step(i)
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    return StepTimes(way, times)
