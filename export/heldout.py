"""The images an export is gated on and calibrated with: never the same ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm4seg.data.datasets import load_dataset
from llm4seg.errors import ExportError
from llm4seg.export.options import ExportOptions


@dataclass
class HeldOut:
    """Images the gates score (RGB uint8 at the model's size) with their masks, calibration images,
    and where they came from."""

    images: np.ndarray
    masks: np.ndarray
    calib: np.ndarray
    data_name: str
    calib_source: str


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
    return HeldOut(pool.images[len(pool) - n_held:], pool.masks[len(pool) - n_held:],
                   calibration_sample(calib_pool, opts.calib_images) if len(calib_pool) else calib_pool,
                   pool.name, f"{opts.calib}:{opts.calib_split or 'all'}")


def calibration_sample(images: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """A seeded random subset in file order: folders are often sorted by class, so never the first N."""
    if count >= len(images):
        return images
    index = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    return images[index]
