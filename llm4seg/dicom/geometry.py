"""Where the tissue is and how large a pixel is: `SequenceOfUltrasoundRegions` (2D tissue regions,
their bounds clipped to the image, deltas in cm reported in mm), else Pixel Spacing / Imager
Pixel Spacing; masks are kept inside the tissue regions (`tissue_mask`); what was found, clipped
or missing goes to `notes`."""

from __future__ import annotations

from typing import Any

import numpy as np

CM_UNITS = 3  # PhysicalUnitsXDirection 3 = cm (DICOM PS3.3 C.8.5.5.1.15)
TISSUE_2D = 1  # RegionSpatialFormat 1 = 2D (tissue or flow), RegionDataType 1 = tissue


def ultrasound_regions(ds: Any, shape_hw: tuple[int, int], notes: list[str]) -> list[dict[str, Any]]:
    """The file's SequenceOfUltrasoundRegions as dicts: bounds (x0, y0, x1, y1 inclusive, clipped to
    the image), tissue (2D tissue), mm per pixel (x, y) or None where the units are not cm."""
    h, w = shape_hw
    out = []
    for i, region in enumerate(ds.get("SequenceOfUltrasoundRegions", [])):
        box = [int(region.get(k, 0)) for k in ("RegionLocationMinX0", "RegionLocationMinY0",
                                                  "RegionLocationMaxX1", "RegionLocationMaxY1")]
        clipped = [min(max(box[0], 0), w - 1), min(max(box[1], 0), h - 1), min(box[2], w - 1), min(box[3], h - 1)]
        if clipped != box:
            notes.append(f"ultrasound region {i} bounds {box} exceed the {w}x{h} image: clipped to {clipped}")
            if box[2] >= 1.5 * w or box[3] >= 1.5 * h:
                notes.append(f"region {i} looks written for a larger image (resampled without updating its "
                             "regions?): its physical deltas may be off by the same factor")
        tissue = int(region.get("RegionSpatialFormat", 0)) == TISSUE_2D and int(region.get("RegionDataType", 0)) == 1
        cm = (int(region.get("PhysicalUnitsXDirection", 0)) == CM_UNITS
              and int(region.get("PhysicalUnitsYDirection", region.get("PhysicalUnitsXDirection", 0))) == CM_UNITS)
        mm = (10 * abs(float(region.PhysicalDeltaX)), 10 * abs(float(region.PhysicalDeltaY))) if cm and \
            region.get("PhysicalDeltaX") and region.get("PhysicalDeltaY") else None
        if tissue and mm is None:
            notes.append(f"ultrasound region {i} is tissue but has no physical deltas in cm: areas in pixels only")
        if clipped[2] >= clipped[0] and clipped[3] >= clipped[1]:
            out.append({"index": i, "bounds_xyxy": clipped, "tissue": tissue, "mm_per_px": mm})
    if sum(r["tissue"] for r in out) > 1:
        notes.append(f"{sum(r['tissue'] for r in out)} tissue regions: masks kept in all of them")
    return out


def physical_size(ds: Any, regions: list[dict[str, Any]], notes: list[str]) -> tuple[tuple[float, float] | None, str]:
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
        if spacing and len(spacing) == 2:
            return (float(spacing[1]), float(spacing[0])), f"{tag} (row, column spacing in mm)"
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


def area_mm2(mask: np.ndarray, mm_per_px: tuple[float, float] | None) -> float | None:
    """A mask's area in mm^2 (None without a physical size)."""
    return None if mm_per_px is None else float(mask.astype(bool).sum()) * mm_per_px[0] * mm_per_px[1]
