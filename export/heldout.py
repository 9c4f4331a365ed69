"""The images an export is gated on and calibrated with: never the same ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from llm4seg.data.datasets import load_dataset
from llm4seg.data.decode import read_image_rgb
from llm4seg.errors import ExportError
from llm4seg.export.options import ExportOptions


@dataclass
class HeldOut:
    """Held-out images (RGB uint8 at the model's size) with their masks, the frames the gates score
    (`gate_frames`), calibration images, and where they came from."""

    images: np.ndarray
    masks: np.ndarray
    calib: np.ndarray
    data_name: str
    calib_source: str
    frames: list[np.ndarray] = field(default_factory=list)
    frame_masks: list[np.ndarray] = field(default_factory=list)


# Each held-out image is scored at three sizes relative to the model's S: its own (native files; S
# for synthetic sets), smaller on both axes (the contract's upscale rule) and larger on one axis,
# smaller on the other (both rules at once). Non-integer factors, so no rule degenerates to a copy.
SIZE_FACTORS = ((0.71, 0.83), (0.77, 1.63))
# Every other frame is tinted so its channels differ: a colour-order fault is invisible on grey images.
TINT_RGB = (1.0, 0.78, 0.55)


def gate_frames(images: np.ndarray, masks: np.ndarray, native: list[np.ndarray | None]) -> tuple[list, list]:
    """The frames a gate scores and their truth at each frame's size (nearest from the model-size
    mask): per image its native frame, a reduced one and a mixed one, every other one tinted."""
    size = images.shape[1]
    frames, truth = [], []
    for k, (image, mask) in enumerate(zip(images, masks)):
        base = image if native[k] is None else native[k]
        variants = [base] + [cv2.resize(base, (max(8, round(size * fw)), max(8, round(size * fh))),
                                        interpolation=cv2.INTER_AREA) for fh, fw in SIZE_FACTORS]
        for j, frame in enumerate(variants):
            if (k + j) % 2:
                frame = np.clip(frame.astype(np.float32) * np.float32(TINT_RGB), 0, 255).astype(np.uint8)
            frames.append(np.ascontiguousarray(frame))
            truth.append(cv2.resize(mask.astype(np.uint8), frame.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0)
    return frames, truth


def _native(pool, stems: list[str]) -> list[np.ndarray | None]:
    """Each stem's image at its own size from the dataset's files (None where there is no file)."""
    out = []
    for stem in stems:
        files = pool.files.get(stem)
        image = read_image_rgb(files[0])[0] if files else None
        out.append(image)
    return out


def _same_folder(a: str | None, b: str | None) -> bool:
    return bool(a and b) and Path(a).resolve() == Path(b).resolve()


def held_out_images(opts: ExportOptions, size: int) -> HeldOut:
    """Held-out images (the last of --data, else --calib, else synthetic) and calibration images;
    an ExportError when INT8 would calibrate on images the gate scores."""
    pool = load_dataset(opts.data or opts.calib, opts.split, size, synthetic_count=2 * opts.parity_images, seed=10_000)
    n_held = min(opts.parity_images, len(pool))
    held_stems = set(pool.stems[len(pool) - n_held:])
    separate = bool(opts.calib) and ((bool(opts.data) and not _same_folder(opts.calib, opts.data))
                                     or opts.calib_split not in (None, opts.split))
    if separate:
        calib_set = load_dataset(opts.calib, opts.calib_split, size)
        calib_pool, calib_stems = calib_set.images, calib_set.stems
        shared = held_stems & set(calib_stems) if _same_folder(opts.calib, opts.data or opts.calib) else set()
    else:  # same pool: calibrate on the images the gate does not score
        calib_pool, calib_stems = pool.images[: len(pool) - n_held], pool.stems[: len(pool) - n_held]
        shared = set() if len(calib_pool) else held_stems
    if opts.int8 and shared:
        raise ExportError(f"calibration and held-out images overlap ({len(shared)} shared, e.g. {sorted(shared)[:3]}): "
                          f"{pool.name} has {len(pool)} image(s) and the gate scores {n_held}",
                          hint="calibrate on another split (--calib-split train1) or folder, or lower --parity-images")
    images, masks = pool.images[len(pool) - n_held:], pool.masks[len(pool) - n_held:]
    frames, truth = gate_frames(images, masks, _native(pool, pool.stems[len(pool) - n_held:]))
    return HeldOut(images, masks, calibration_sample(calib_pool, opts.calib_images) if len(calib_pool) else calib_pool,
                   pool.name, f"{opts.calib}:{opts.calib_split or 'all'}", frames, truth)


def calibration_sample(images: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """A seeded random subset in file order: folders are often sorted by class, so never the first N."""
    if count >= len(images):
        return images
    index = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    return images[index]
