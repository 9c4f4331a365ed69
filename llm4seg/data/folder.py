"""Folder datasets: images/ and masks/ matched by file stem, optional split files.

Every problem found while scanning is collected, then reported at once (offending stems and
the fix), unless skip_bad is set, in which case the skipped stems are returned for reporting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from llm4seg.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_THRESHOLD = 127  # JPEG masks carry noise around 0 and 255


@dataclass
class Pair:
    stem: str
    image: Path
    mask: Path


@dataclass
class Scan:
    pairs: list[Pair]
    skipped: dict[str, str] = field(default_factory=dict)  # stem -> reason


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            files.setdefault(p.stem, p)
    return files


def read_split(root: Path, split: str) -> list[str]:
    """Stems listed in `root/splits/<split>.txt` (or a path to a split file)."""
    path = Path(split) if Path(split).suffix == ".txt" else root / "splits" / f"{split}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in (root / "splits").glob("*.txt")) if (root / "splits").is_dir() else []
        raise DataError(f"split {split!r} not found at {path}",
                        hint=f"available splits: {', '.join(available) or 'none (omit --split for a seeded split)'}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def scan_folder(root: Path | str, split: str | None = None, skip_bad: bool = False) -> Scan:
    root = Path(root)
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise DataError(f"{root} has no {sub}/ folder",
                            hint="a dataset folder holds images/ and masks/ with matching file stems")
    images, masks = _by_stem(root / "images"), _by_stem(root / "masks")
    if not images:
        raise DataError(f"{root / 'images'} holds no images ({', '.join(IMAGE_EXTS)})",
                        hint="put the images in images/ and their masks in masks/")
    stems = read_split(root, split) if split else sorted(images)
    problems: dict[str, str] = {}
    unknown = [s for s in stems if s not in images]
    if split and unknown:
        problems.update({s: f"listed in split {split!r} but not in images/" for s in unknown})
    for stem in stems:
        if stem in images and stem not in masks:
            problems[stem] = "no mask in masks/"
    return _finish(root, stems, images, masks, problems, skip_bad)


def _finish(root, stems, images, masks, problems, skip_bad) -> Scan:
    pairs = [Pair(s, images[s], masks[s]) for s in stems if s not in problems]
    if problems and not skip_bad:
        raise_problems(root, problems)
    return Scan(pairs=pairs, skipped=problems)


def raise_problems(root: Path, problems: dict[str, str]) -> None:
    listed = "; ".join(f"{s}: {r}" for s, r in list(problems.items())[:20])
    more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
    raise DataError(f"{len(problems)} bad item(s) in {root}: {listed}{more}",
                    hint="fix or remove those files, or pass --skip-bad to leave them out (they are reported)")


def read_image_rgb(path: Path) -> np.ndarray | None:
    """uint8 (H, W, 3) RGB; grey images are replicated to three channels. None if unreadable."""
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if data is None else cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray | None:
    data = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return None if data is None else data > MASK_THRESHOLD


def load_pairs(scan: Scan, size: int, skip_bad: bool = False, root: Path | None = None):
    """Decode and resize every pair once: images uint8 (N, size, size, 3), masks bool (N, size, size)."""
    images, masks, stems = [], [], []
    problems: dict[str, str] = {}
    for pair in scan.pairs:
        img, mask = read_image_rgb(pair.image), read_mask(pair.mask)
        if img is None or mask is None:
            problems[pair.stem] = f"unreadable {'image' if img is None else 'mask'} file"
            continue
        if img.shape[:2] != mask.shape:
            problems[pair.stem] = f"image is {img.shape[1]}x{img.shape[0]} but mask is {mask.shape[1]}x{mask.shape[0]}"
            continue
        images.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0)
        stems.append(pair.stem)
    if problems:
        if not skip_bad:
            raise_problems(root or scan.pairs[0].image.parent.parent, problems)
        scan.skipped.update(problems)
    if not images:
        raise DataError("no usable image/mask pairs were found", hint="check the dataset folder and split")
    return np.stack(images), np.stack(masks), stems
