"""Resolve `--data` and split options into in-memory arrays, decoded and resized once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llm4seg.data.folder import load_pairs, read_split, scan_folder
from llm4seg.data.synthetic import synthetic_dataset
from llm4seg.errors import DataError

SYNTHETIC = "synthetic"


@dataclass
class ArrayDataset:
    """images uint8 (N, S, S, 3) RGB; masks bool (N, S, S); one stem per item."""

    name: str
    images: np.ndarray
    masks: np.ndarray
    stems: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    mask_encoding: dict | None = None  # the binarisation rule detected over the masks (None: synthetic)
    files: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # stem -> (image, mask) on disk

    def __len__(self) -> int:
        return len(self.stems)

    def subset(self, index: np.ndarray, name: str) -> "ArrayDataset":
        """The images at `index` as a new dataset called `name` (masks, stems and encoding kept)."""
        return ArrayDataset(name, self.images[index], self.masks[index], [self.stems[i] for i in index],
                            self.skipped, self.mask_encoding, self.files)


def load_dataset(data: str | None, split: str | None, size: int, skip_bad: bool = False,
                 synthetic_count: int = 200, seed: int = 0) -> ArrayDataset:
    """One dataset: a folder (optionally one split of it) or the synthetic default."""
    if data in (None, SYNTHETIC):
        images, masks, stems = synthetic_dataset(synthetic_count, size, seed=seed)
        return ArrayDataset(SYNTHETIC, images, masks, stems)
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"data folder {data!r} does not exist",
                        hint="pass a folder with images/ and masks/, or omit --data for the synthetic set")
    scan = scan_folder(root, split, skip_bad)
    images, masks, stems, encoding = load_pairs(scan, size, skip_bad, root)
    files = {p.stem: (p.image, p.mask) for p in scan.pairs}
    return ArrayDataset(f"{root.name}:{split or 'all'}", images, masks, stems, scan.skipped, encoding.to_dict(), files)


HELD_OUT_SPLITS = ("val", "val1")


def held_out_split(data: str | None, split: str | None) -> str | None:
    """The split eval and export score when none is given: the folder's `val` split, else `val1`,
    else None (every image: the folder has no split files). One rule for every command."""
    if split or data in (None, SYNTHETIC):
        return split
    return next((name for name in HELD_OUT_SPLITS if (Path(data) / "splits" / f"{name}.txt").is_file()), None)


def default_val_split(root: Path, train_split: str) -> str | None:
    """trainK -> valK when the folder has that split file (BUSI's and Kvasir's layout)."""
    if train_split.startswith("train"):
        candidate = "val" + train_split[len("train"):]
        if (root / "splits" / f"{candidate}.txt").is_file():
            return candidate
    return None


def train_val_datasets(data: str | None, split: str | None, val_split: str | None, size: int,
                       seed: int = 0, val_fraction: float = 0.2, skip_bad: bool = False,
                       synthetic_count: int = 200) -> tuple[ArrayDataset, ArrayDataset]:
    """The training and validation sets; without split files, a seeded random split."""
    if data not in (None, SYNTHETIC) and split and not val_split:
        val_split = default_val_split(Path(data), split)
    if split and val_split:
        train = load_dataset(data, split, size, skip_bad)
        val = load_dataset(data, val_split, size, skip_bad)
        overlap = set(train.stems) & set(val.stems)
        if overlap:
            raise DataError(f"splits {split!r} and {val_split!r} share {len(overlap)} stems, e.g. {sorted(overlap)[:3]}",
                            hint="use disjoint split files")
        return train, val
    whole = load_dataset(data, split, size, skip_bad, synthetic_count, seed)
    if len(whole) < 2:
        raise DataError(f"{whole.name} has {len(whole)} usable pair(s); training needs at least 2",
                        hint="add images, or check the split")
    order = np.random.default_rng(seed).permutation(len(whole))
    n_val = max(1, int(round(len(whole) * val_fraction)))
    return whole.subset(np.sort(order[n_val:]), whole.name + ":train"), whole.subset(np.sort(order[:n_val]), whole.name + ":val")


__all__ = ["ArrayDataset", "SYNTHETIC", "load_dataset", "read_split", "train_val_datasets"]
