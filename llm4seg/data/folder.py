"""Folder datasets: images/ and masks/ matched by file stem, optional split files.

Every problem found while scanning is collected, then reported at once (offending stems and
the fix), unless skip_bad is set, in which case the skipped stems are returned for reporting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from llm4seg.contract import resize_square
from llm4seg.data.decode import read_image_rgb, read_mask_raw
from llm4seg.dicom import DICOM_SUFFIXES, is_dicom_file
from llm4seg.data.masks import MaskStats
from llm4seg.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", *DICOM_SUFFIXES)


@dataclass
class Pair:
    """One image file and its mask file, matched by stem."""

    stem: str
    image: Path
    mask: Path


@dataclass
class Scan:
    """The pairs of a dataset folder (or split) and the stems left out, with why."""

    pairs: list[Pair]
    skipped: dict[str, str] = field(default_factory=dict)  # stem -> reason


def _by_stem(folder: Path, problems: dict[str, str]) -> dict[str, Path]:
    """stem -> file; two files with one stem (case.png and case.jpg) are a problem, never a silent pick."""
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.name.startswith(".") and (p.suffix.lower() in IMAGE_EXTS or is_dicom_file(p)):
            if p.stem in files:
                problems[p.stem] = (f"{folder.name}/ holds both {files[p.stem].name!r} and {p.name!r}; "
                                    "keep one file per stem")
                continue
            files[p.stem] = p
    return files


def read_split(root: Path, split: str) -> list[str]:
    """Stems listed in `root/splits/<split>.txt` (or a path to a split file); a UTF-8 BOM is ignored."""
    path = Path(split) if Path(split).suffix == ".txt" else root / "splits" / f"{split}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in (root / "splits").glob("*.txt")) if (root / "splits").is_dir() else []
        raise DataError(f"split {split!r} not found at {path}",
                        hint=f"available splits: {', '.join(available) or 'none (omit --split for a seeded split)'}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"split file {path} is not UTF-8 text ({exc})", hint="save it as UTF-8, one stem a line") from exc
    stems = [line.strip() for line in text.splitlines() if line.strip()]
    repeated = sorted({s for s in stems if stems.count(s) > 1}) if len(set(stems)) != len(stems) else []
    if repeated:  # a stem listed twice would be trained (or scored) twice
        raise DataError(f"split file {path} lists {len(repeated)} stem(s) more than once: {repeated[:5]}",
                        hint="list each image once (e.g. sort -u the file)")
    return stems


def scan_folder(root: Path | str, split: str | None = None, skip_bad: bool = False) -> Scan:
    """Match images/ and masks/ of a dataset folder by stem (only `split`'s stems when given).

    Args:
        skip_bad: leave out unmatched or unreadable items (reported in `Scan.skipped`) instead of
            raising a DataError that lists them.
    """
    root = Path(root)
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise DataError(f"{root} has no {sub}/ folder",
                            hint="a dataset folder holds images/ and masks/ with matching file stems")
    problems: dict[str, str] = {}
    images, masks = _by_stem(root / "images", problems), _by_stem(root / "masks", problems)
    if not images:
        raise DataError(f"{root / 'images'} holds no images ({', '.join(IMAGE_EXTS)})",
                        hint="put the images in images/ and their masks in masks/")
    stems = read_split(root, split) if split else sorted(images)
    if split:  # a duplicate outside the split is not this run's problem
        problems = {s: r for s, r in problems.items() if s in set(stems)}
    unknown = [s for s in stems if s not in images]
    if split and unknown:
        problems.update({s: f"listed in split {split!r} but not in images/" for s in unknown})
    for stem in stems:
        if stem in images and stem not in masks and stem not in problems:
            problems[stem] = "no mask in masks/"
    return _finish(root, stems, images, masks, problems, skip_bad)


def _finish(root, stems, images, masks, problems, skip_bad) -> Scan:
    pairs = [Pair(s, images[s], masks[s]) for s in stems if s not in problems]
    if problems and not skip_bad:
        raise_problems(root, problems)
    return Scan(pairs=pairs, skipped=problems)


def raise_problems(root: Path, problems: dict[str, str]) -> None:
    """Raise one DataError listing the bad items of `root` (the first 20) and how to proceed."""
    listed = "; ".join(f"{s}: {r}" for s, r in list(problems.items())[:20])
    more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
    raise DataError(f"{len(problems)} bad item(s) in {root}: {listed}{more}",
                    hint="fix or remove those files, or pass --skip-bad to leave them out (they are reported)")


def _read_pair(pair: Pair) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    img, reason = read_image_rgb(pair.image)
    if img is None:
        return None, None, f"unreadable image file ({reason})"
    mask, reason = read_mask_raw(pair.mask)
    if mask is None:
        return None, None, f"unreadable mask file ({reason})"
    if img.shape[:2] != mask.shape:
        return None, None, f"image is {img.shape[1]}x{img.shape[0]} but mask is {mask.shape[1]}x{mask.shape[0]}"
    return img, mask, ""


def read_pairs(scan: Scan, skip_bad: bool, root: Path, resize_to: int | None = None, limit: int | None = None):
    """Decode every pair (resized to `resize_to`, else native size) and binarise the masks with the
    encoding detected over all of them. Returns (images RGB uint8, masks bool, stems, MaskEncoding)."""
    images, raw_masks, stems = [], [], []
    problems: dict[str, str] = {}
    stats = MaskStats()
    for pair in scan.pairs[:limit]:
        img, mask, reason = _read_pair(pair)
        if img is None:
            problems[pair.stem] = reason
            continue
        stats.add(pair.stem, mask)
        if resize_to:  # images by the frame contract's rule; masks nearest (binarising after is exact)
            img = resize_square(img, resize_to)
            mask = cv2.resize(mask, (resize_to, resize_to), interpolation=cv2.INTER_NEAREST)
        images.append(img)
        raw_masks.append(mask)
        stems.append(pair.stem)
    if problems:
        if not skip_bad:
            raise_problems(root, problems)
        scan.skipped.update(problems)
    if not images:
        raise DataError(f"no usable image/mask pairs were found in {root}", hint="check the dataset folder and split")
    encoding = stats.encoding(str(root))
    return images, [encoding.binarise(m) for m in raw_masks], stems, encoding


def load_pairs(scan: Scan, size: int, skip_bad: bool = False, root: Path | None = None):
    """Every pair resized once: images uint8 (N, size, size, 3), masks bool (N, size, size), stems, encoding."""
    root = root or scan.pairs[0].image.parent.parent
    images, masks, stems, encoding = read_pairs(scan, skip_bad, root, resize_to=size)
    return np.stack(images), np.stack(masks), stems, encoding
