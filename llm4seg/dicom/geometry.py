"""Where the tissue is and how large a pixel is, read once from a DICOM header into one validated
`FrameGeometry` (llm4seg/geometry.py) that every door's mask stage uses.

Sources, in order: `SequenceOfUltrasoundRegions` (2D tissue regions, their bounds clipped to the
image, deltas in cm reported in mm), else Pixel Spacing / Imager Pixel Spacing. A value that would
give a wrong area or distance (zero, negative, NaN or infinite deltas or spacing, a region whose
bounds are not integers, are inverted, or lie wholly outside the image) is refused with the tag
named; what was found, clipped or missing goes to the geometry's notes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from llm4seg.dicom.files import refusal
from llm4seg.geometry import MAX_MM_PER_PX, FrameGeometry

CM_UNITS = 3  # PhysicalUnitsXDirection 3 = cm (DICOM PS3.3 C.8.5.5.1.15)
TISSUE_2D = 1  # RegionSpatialFormat 1 = 2D (tissue or flow), RegionDataType 1 = tissue
BOUNDS = ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")
MAX_REGIONS = 64  # a cart writes a handful (tissue, Doppler, colour bar); more is a damaged header


def _number(value: Any, tag: str, where: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise refusal(where, f"{tag} is {value!r}, not a number", "the header is damaged: export it again") from None
    if not math.isfinite(number):
        raise refusal(where, f"{tag} is {value!r}, not a finite number", "the header is damaged: export it again")
    return number


def _spacing_mm(value: float, tag: str, where: Any) -> float:
    if not 0 < value <= MAX_MM_PER_PX:
        raise refusal(where, f"{tag} gives a pixel size of {value!r} mm, not in (0, {MAX_MM_PER_PX:g}]",
                      "the header is damaged (areas and distances in mm would be wrong): export it again")
    return value


def _region_box(region: Any, i: int, shape_hw: tuple[int, int], where: Any, notes: list[str]) -> list[int] | None:
    """The region's inclusive bounds clipped to the image; None when it lies wholly outside."""
    h, w = shape_hw
    values = [_number(region.get(k, 0), f"ultrasound region {i} {k}", where) for k in BOUNDS]
    if any(v != int(v) for v in values):
        raise refusal(where, f"ultrasound region {i} bounds {values} are not whole pixels", "the header is damaged")
    box = [int(v) for v in values]
    if box[2] < box[0] or box[3] < box[1]:
        raise refusal(where, f"ultrasound region {i} is inverted ({BOUNDS[2]} {box[2]} < {BOUNDS[0]} {box[0]} or "
                             f"{BOUNDS[3]} {box[3]} < {BOUNDS[1]} {box[1]})", "the header is damaged: export it again")
    clipped = [max(box[0], 0), max(box[1], 0), min(box[2], w - 1), min(box[3], h - 1)]
    if clipped[2] < clipped[0] or clipped[3] < clipped[1]:
        notes.append(f"ultrasound region {i} {box} lies outside the {w}x{h} image: left out")
        return None
    if clipped != box:
        notes.append(f"ultrasound region {i} bounds {box} exceed the {w}x{h} image: clipped to {clipped}")
        if box[2] >= 1.5 * w or box[3] >= 1.5 * h:
            notes.append(f"region {i} looks written for a larger image (resampled without updating its "
                         "regions?): its physical deltas may be off by the same factor")
    return clipped


def ultrasound_regions(ds: Any, shape_hw: tuple[int, int], notes: list[str], where: Any = "header") -> list[dict[str, Any]]:
    """The file's SequenceOfUltrasoundRegions as dicts: bounds (x0, y0, x1, y1 inclusive, clipped to
    the image), tissue (2D tissue), mm per pixel (x, y) or None where the units are not cm."""
    regions = ds.get("SequenceOfUltrasoundRegions") or []
    if len(regions) > MAX_REGIONS:
        raise refusal(where, f"SequenceOfUltrasoundRegions holds {len(regions)} regions (at most {MAX_REGIONS})",
                      "the header is damaged: export it again")
    out = []
    for i, region in enumerate(regions):
        box = _region_box(region, i, shape_hw, where, notes)
        tissue = int(_number(region.get("RegionSpatialFormat", 0), f"region {i} RegionSpatialFormat", where)) == TISSUE_2D \
            and int(_number(region.get("RegionDataType", 0), f"region {i} RegionDataType", where)) == 1
        units = [region.get("PhysicalUnitsXDirection", 0), region.get("PhysicalUnitsYDirection",
                                                                      region.get("PhysicalUnitsXDirection", 0))]
        mm = None
        if all(u == CM_UNITS for u in units) and "PhysicalDeltaX" in region and "PhysicalDeltaY" in region:
            mm = tuple(_spacing_mm(10 * abs(_number(region.get(k), f"ultrasound region {i} {k}", where)),
                                   f"ultrasound region {i} {k}", where) for k in ("PhysicalDeltaX", "PhysicalDeltaY"))
        if tissue and mm is None:
            notes.append(f"ultrasound region {i} is tissue but has no physical deltas in cm: areas in pixels only")
        if box is not None:
            out.append({"index": i, "bounds_xyxy": box, "tissue": tissue, "mm_per_px": mm})
    if sum(r["tissue"] for r in out) > 1:
        notes.append(f"{sum(r['tissue'] for r in out)} tissue regions: masks kept in all of them")
    return out


def physical_size(ds: Any, regions: list[dict[str, Any]], notes: list[str],
                  where: Any = "header") -> tuple[tuple[float, float] | None, str]:
    """(mm per pixel (x, y) or None, where it came from)."""
    sizes = {r["mm_per_px"] for r in regions if r["tissue"] and r["mm_per_px"]}
    if len(sizes) > 1:
        notes.append(f"tissue regions with different pixel sizes {sorted(sizes)}: areas in mm^2 use the first")
    if sizes:
        mm = next(r["mm_per_px"] for r in regions if r["tissue"] and r["mm_per_px"])
        if abs(mm[0] - mm[1]) > 1e-6 * max(mm):
            notes.append(f"non-square pixels ({mm[0]:.4f} x {mm[1]:.4f} mm): areas use both, HD95 in mm needs both")
        return mm, "SequenceOfUltrasoundRegions (PhysicalDeltaX/Y, cm)"
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = ds.get(tag)
        if spacing is None or spacing == "":
            continue
        values = [spacing] if isinstance(spacing, (str, bytes)) or not hasattr(spacing, "__iter__") else list(spacing)
        if len(values) != 2:
            raise refusal(where, f"{tag} holds {len(values)} value(s) {values!r}; expected row and column spacing",
                          "the header is damaged: export it again")
        row, col = (_spacing_mm(_number(v, tag, where), tag, where) for v in values)
        return (col, row), f"{tag} (row, column spacing in mm)"
    notes.append("no ultrasound region deltas and no Pixel Spacing: areas in pixels only")
    return None, "none"


def tissue_mask(regions: list[dict[str, Any]], shape_hw: tuple[int, int]) -> np.ndarray | None:
    """uint8 0/1 (H, W): 1 inside the 2D tissue regions; None when the file names none (the whole
    frame counts)."""
    tissue = [r for r in regions if r["tissue"]]
    if not tissue:
        return None
    mask = np.zeros(shape_hw, np.uint8)
    for r in tissue:
        x0, y0, x1, y1 = r["bounds_xyxy"]
        mask[y0:y1 + 1, x0:x1 + 1] = 1
    return mask


def frame_geometry(ds: Any, shape_hw: tuple[int, int], where: Any = "header") -> tuple[FrameGeometry, list[dict]]:
    """The validated geometry of a DICOM header's frames, and its ultrasound regions (for reports)."""
    notes: list[str] = []
    regions = ultrasound_regions(ds, shape_hw, notes, where)
    mm, source = physical_size(ds, regions, notes, where)
    return FrameGeometry(shape_hw, tissue_mask(regions, shape_hw), mm, source, tuple(notes)), regions


__all__ = ["frame_geometry", "physical_size", "tissue_mask", "ultrasound_regions"]
