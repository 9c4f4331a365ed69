"""The built-in synthetic dataset: ultrasound-like lesions and endoscopy-like polyps with masks.

Generated from a seed, so the zero-setup default needs nothing downloaded and is the same on
every machine. Half the images are grey speckled ultrasound fans with a dark (hypoechoic)
lesion; half are pink mucosa with a raised, shaded polyp. Lesion shapes are irregular ellipses.
"""

from __future__ import annotations

import cv2
import numpy as np


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """A filled irregular ellipse (bool mask) somewhere inside the frame."""
    mask = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    rx, ry = rng.uniform(0.08, 0.22, 2) * size
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = 1 + 0.18 * np.sin(rng.integers(2, 5) * angles + rng.uniform(0, 6.3)) * rng.uniform(0.2, 1)
    rot = rng.uniform(0, np.pi)
    x = rx * wobble * np.cos(angles)
    y = ry * wobble * np.sin(angles)
    pts = np.stack([cx + x * np.cos(rot) - y * np.sin(rot), cy + x * np.sin(rot) + y * np.cos(rot)], 1)
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask.astype(bool)


def _ultrasound(rng: np.random.Generator, size: int, lesion: np.ndarray) -> np.ndarray:
    base = cv2.GaussianBlur(rng.uniform(0.25, 0.6, (size, size)).astype(np.float32), (0, 0), size / 24)
    speckle = rng.rayleigh(0.35, (size, size)).astype(np.float32)
    img = base * speckle * 1.6
    soft = cv2.GaussianBlur(lesion.astype(np.float32), (0, 0), 1.5)
    img = img * (1 - 0.75 * soft) + 0.05 * soft * speckle
    # A bright posterior-enhancement band below the lesion, as in real breast ultrasound.
    ys = np.nonzero(lesion.any(1))[0]
    if len(ys):
        band = np.zeros_like(img)
        band[ys.max():, :] = 0.15 * lesion[ys.max() - 1][None, :]
        img += cv2.GaussianBlur(band, (0, 0), 3)
    grey = np.clip(img * 255, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _endoscopy(rng: np.random.Generator, size: int, polyp: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    vignette = 1 - 0.7 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), size / 40)
    mucosa = np.stack([0.78 + 0.05 * texture, 0.42 + 0.04 * texture, 0.40 + 0.03 * texture], -1)
    dist = cv2.distanceTransform(polyp.astype(np.uint8), cv2.DIST_L2, 5)
    height = dist / (dist.max() + 1e-6)
    shade = np.clip(height[..., None], 0, 1)
    polyp_colour = np.array([0.86, 0.52, 0.45], np.float32) + 0.12 * (shade - 0.5)
    img = np.where(polyp[..., None], polyp_colour * (0.8 + 0.3 * shade), mucosa) * vignette[..., None]
    highlight = (height > 0.75) & (rng.uniform(size=(size, size)) > 0.7)
    img[highlight] = 0.97
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def synthetic_dataset(n: int, size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """images uint8 (n, size, size, 3) RGB, masks bool (n, size, size), stems."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), bool)
    stems = []
    for i in range(n):
        mask = _blob(rng, size)
        kind = "ultrasound" if i % 2 == 0 else "endoscopy"
        images[i] = _ultrasound(rng, size, mask) if kind == "ultrasound" else _endoscopy(rng, size, mask)
        masks[i] = mask
        stems.append(f"synthetic_{kind}_{i:04d}")
    return images, masks, stems


def write_synthetic_folder(root, n: int, size: int = 256, seed: int = 0) -> None:
    """Write the synthetic set as a dataset folder (images/*.png, masks/*.png) for CLI use and tests."""
    from pathlib import Path

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    images, masks, stems = synthetic_dataset(n, size, seed)
    for image, mask, stem in zip(images, masks, stems):
        cv2.imwrite(str(root / "images" / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask.astype(np.uint8) * 255)
