"""How a dataset stores its masks, detected once from the values of all its masks.

Datasets arrive as 0/1, 0/k, 0/255, 0/65535, palette PNGs and lossy JPEG masks whose values
spread near 0 and near 255. A single fixed threshold (> 127) silently turns 0/1 masks into
empty ones, and an empty validation set then scores a perfect IoU. So the rule is chosen per
dataset from a histogram of every mask's values, recorded in the run, and anything that fits
no binary rule (multi-class labels, mixed encodings, all-empty masks) is an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from llm4seg.errors import DataError

# Lossy masks: at most this fraction of pixels may sit in the middle half of the value range.
MAX_MIDDLE_FRACTION = 0.02
# A mask whose values all stay in the lowest quarter yet covers this much is a label, not noise.
LABEL_AREA_FRACTION = 0.01
# Lossy (JPEG) masks spread over many values near 0 and the top; a few distinct values (0/200/255)
# are classes, not compression noise.
MIN_LOSSY_VALUES = 8


@dataclass(frozen=True)
class MaskEncoding:
    """A binarisation rule: foreground = value > threshold."""

    kind: str            # "binary" ({0, k}) or "lossy" (values spread near both ends)
    bit_depth: int       # 8 or 16, as stored
    threshold: int
    values: tuple[int, ...]  # the non-zero values seen (at most 12 listed)

    def describe(self) -> str:
        """The rule in words (bit depth, values, what counts as foreground), for reports."""
        shown = "/".join(str(v) for v in (0, *self.values))
        if self.kind == "binary":
            return f"{self.bit_depth}-bit masks with values {shown}: foreground = value > 0"
        return (f"{self.bit_depth}-bit masks with lossy values ({len(self.values)}+ distinct non-zero): "
                f"foreground = value > {self.threshold}")

    def to_dict(self) -> dict:
        """The encoding as JSON-ready data, with its rule in words."""
        return {**asdict(self), "values": list(self.values), "rule": self.describe()}

    def binarise(self, mask: np.ndarray) -> np.ndarray:
        """A mask image -> boolean foreground (value above the encoding's threshold)."""
        return mask > self.threshold


class MaskStats:
    """Accumulates a value histogram over masks; `encoding()` picks the rule."""

    def __init__(self) -> None:
        self.hist = np.zeros(65536, np.int64)
        self.bit_depth = 8
        self.pixels = 0
        self.per_mask_max: list[tuple[str, int, int, int]] = []  # (stem, max value, non-zero pixels, distinct values)

    def add(self, stem: str, mask: np.ndarray) -> None:
        """Count one mask's values (uint8 or uint16; other dtypes are refused)."""
        if mask.dtype == np.uint16:
            self.bit_depth = 16
        elif mask.dtype != np.uint8:
            raise DataError(f"mask {stem!r} has dtype {mask.dtype}",
                            hint="store masks as 8- or 16-bit integer images (PNG)")
        counts = np.bincount(mask.ravel(), minlength=256)
        self.hist[: len(counts)] += counts
        nonzero = int(mask.size - counts[0])
        present = np.flatnonzero(counts)
        self.per_mask_max.append((stem, int(present[-1]), nonzero, int((present > 0).sum())))
        self.pixels += mask.size

    def encoding(self, where: str) -> MaskEncoding:
        """The encoding the counted masks use: binary (0 and one value) or lossy (many values,
        thresholded at half range); a DataError when every mask is empty.
        """
        full = 255 if self.bit_depth == 8 else 65535
        values = np.nonzero(self.hist)[0]
        nonzero = [int(v) for v in values if v > 0]
        if not nonzero:
            raise DataError(f"every mask in {where} is empty (all pixels 0)",
                            hint="check the masks folder: scores on empty masks mean nothing")
        if len(nonzero) == 1:
            return MaskEncoding("binary", self.bit_depth, 0, tuple(nonzero))
        total = int(self.hist.sum())
        middle = int(self.hist[full // 4 + 1: 3 * full // 4 + 1].sum())
        high = max(nonzero) > full // 2
        if high and middle <= MAX_MIDDLE_FRACTION * total and len(nonzero) >= MIN_LOSSY_VALUES:
            self._refuse_mixed(where, full)
            return MaskEncoding("lossy", self.bit_depth, full // 2, tuple(nonzero[:12]))
        counts = ", ".join(f"{v}: {int(self.hist[v])} px" for v in values[:12])
        raise DataError(f"the masks in {where} hold values {counts}"
                        f"{' ...' if len(values) > 12 else ''}, which fit no binary encoding",
                        hint="llm4seg segments one foreground class: masks must be 0 plus one value "
                        "(e.g. 0/1 or 0/255), or lossy JPEGs near 0 and 255; merge multi-class labels first")

    def _refuse_mixed(self, where: str, full: int) -> None:
        """0/1 masks among 0/255 ones would become empty under the > 127 rule: refuse them."""
        # A clean label (one value, e.g. a small 0/1 lesion) is refused whatever its area; several
        # low values over a small area are compression noise of an empty mask.
        low = [stem for stem, top, area, distinct in self.per_mask_max
               if 0 < top <= full // 4 and (distinct == 1 or area > LABEL_AREA_FRACTION * self.pixels / len(self.per_mask_max))]
        if low:
            raise DataError(f"the masks in {where} mix encodings: {len(low)} mask(s) (e.g. {low[:3]}) use only "
                            f"small values while others reach {full}",
                            hint="store every mask with the same foreground value (e.g. all 0/255)")


__all__ = ["MaskEncoding", "MaskStats"]
