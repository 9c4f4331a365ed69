"""The strict reader of what a DICOM header declares about its pixels, checked against the bytes
present before anything is allocated (one reader for every transfer syntax).

A header is untrusted: 20,000,000 frames declared over a 100 KB file, Rows x Columns 18000 over a
64 x 64 JPEG stream, 1-bit BitsAllocated over 8-bit data, YBR_FULL_422 declared over RGB data, or
NaN frame times each made a decoder allocate gigabytes, decode garbage or fail after results were
written. `PixelHeader.read` returns the values once validated, or refuses naming the tag:
- sizes and bits: Rows, Columns in 1-65535, SamplesPerPixel matching the photometric
  interpretation, BitsAllocated 8 or 16, 1 <= BitsStored <= BitsAllocated, HighBit = BitsStored - 1,
  NumberOfFrames in 1-MAX_FRAMES;
- native (uncompressed) pixel data: its length must be exactly what the sizes say (odd lengths padded);
- encapsulated pixel data: each frame takes at least one fragment item, so the frames cannot
  outnumber the bytes; the first frame's own codestream (JPEG SOF, JPEG 2000 SIZ, RLE header)
  must agree with Rows and Columns, and RLE's can expand at most 64-fold;
- encapsulated video (MPEG-2, H.264, HEVC): at most one frame per byte of stream;
- frame timing: Frame Time, Frame Time Vector and Cine Rate finite and positive.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm4seg.dicom.files import refusal

MAX_FRAMES = 1_000_000  # an hour at 30 fps is 108,000
MAX_FRAME_BYTES = 2**30  # one decoded frame; 8K RGB is 0.1 GiB: more is a damaged header, never allocated
SAMPLES = {"MONOCHROME1": 1, "MONOCHROME2": 1, "PALETTE COLOR": 1, "RGB": 3, "YBR_FULL": 3, "YBR_FULL_422": 3,
           "YBR_RCT": 3, "YBR_ICT": 3}  # the photometric interpretations llm4seg converts, and their samples
VIDEO_SAMPLES = {**SAMPLES, "YBR_PARTIAL_420": 3, "YBR_PARTIAL_422": 3}  # MPEG-2/H.264/HEVC in DICOM (FFmpeg converts)
ITEM_HEADER = 8  # (FFFE,E000) tag and length
RLE_MAX_EXPANSION = 64  # a two-byte run writes at most 128 bytes
JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
HEAD_BYTES = 1 << 16  # how much of the first fragment is read for its codestream header


def _int(ds: Any, keyword: str, tag: str, path: Path, default: Any = None, lo: int = 0, hi: int = 2**31) -> int:
    value = ds.get(keyword, default)
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise refusal(path, f"{keyword} {tag} is {value!r}, not an integer", "the header is damaged: export it again") \
            from None
    if not lo <= number <= hi:
        raise refusal(path, f"{keyword} {tag} is {number}, not in {lo}-{hi}", "the header is damaged: export it again")
    return number


def _positive(value: Any, what: str, path: Path) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise refusal(path, f"{what} is {value!r}, not a number", "the header is damaged: export it again") from None
    if not (math.isfinite(number) and number > 0):
        raise refusal(path, f"{what} is {value!r}; expected a finite number > 0", "the header is damaged: export it again")
    return number


@dataclass(frozen=True)
class PixelHeader:
    """The pixel description of a DICOM file, validated (see the module)."""

    rows: int
    cols: int
    samples: int
    bits_allocated: int
    bits_stored: int
    frames: int
    photometric: str

    @property
    def frame_bytes(self) -> int:
        """Bytes of one decoded frame."""
        return self.rows * self.cols * self.samples * (self.bits_allocated // 8)

    @classmethod
    def read(cls, ds: Any, path: Path, video: bool = False) -> "PixelHeader":
        """The validated sizes and bits (no pixel data read); `video`: an encapsulated video stream."""
        photometric = str(ds.get("PhotometricInterpretation", "")).strip()
        known = VIDEO_SAMPLES if video else SAMPLES
        if photometric not in known:
            raise refusal(path, f"photometric interpretation {photometric!r} (0028,0004) is not one llm4seg converts",
                          f"convert it to one of {', '.join(known)}")
        rows = _int(ds, "Rows", "(0028,0010)", path, lo=1, hi=65535)
        cols = _int(ds, "Columns", "(0028,0011)", path, lo=1, hi=65535)
        samples = _int(ds, "SamplesPerPixel", "(0028,0002)", path, 1, lo=1, hi=4)
        if samples != known[photometric]:
            raise refusal(path, f"SamplesPerPixel (0028,0002) is {samples} for {photometric}, which has "
                                f"{known[photometric]}", "the header is damaged: export it again")
        allocated = _int(ds, "BitsAllocated", "(0028,0100)", path, lo=1, hi=64)
        if allocated not in (8, 16):
            raise refusal(path, f"BitsAllocated (0028,0100) is {allocated}; llm4seg reads 8 or 16 bits per sample",
                          "export the images as 8- or 16-bit (1-bit and 32-bit frames are not video)")
        stored = _int(ds, "BitsStored", "(0028,0101)", path, allocated, lo=1, hi=allocated)
        high = _int(ds, "HighBit", "(0028,0102)", path, stored - 1, lo=0, hi=allocated - 1)
        if high != stored - 1:
            raise refusal(path, f"HighBit (0028,0102) is {high} with BitsStored {stored}; expected {stored - 1}",
                          "the header is damaged: export it again")
        frames = _int(ds, "NumberOfFrames", "(0028,0008)", path, 1, lo=1, hi=MAX_FRAMES)
        header = cls(rows, cols, samples, allocated, stored, frames, photometric)
        if header.frame_bytes > MAX_FRAME_BYTES:
            raise refusal(path, f"one frame of Rows x Columns {rows} x {cols} (0028,0010/0011) would take "
                                f"{header.frame_bytes / 2**30:.1f} GiB (at most {MAX_FRAME_BYTES // 2**30} GiB decoded)",
                          "the header is damaged, or this is not a video frame (whole-slide images are not supported)")
        return header

    def native_bytes(self) -> int:
        """Bytes native pixel data of these sizes holds (4:2:2 keeps two samples per pixel)."""
        samples = 2 if self.photometric == "YBR_FULL_422" else self.samples
        return self.rows * self.cols * self.frames * samples * (self.bits_allocated // 8)


def check_native(header: PixelHeader, element_length: int, path: Path) -> None:
    """Native pixel data must be exactly as long as its sizes say (padded to even)."""
    expected = header.native_bytes()
    if element_length not in (expected, expected + (expected % 2)):
        what = "truncated: copy it again from its source" if element_length < expected else \
            "damaged: the declared sizes or photometric interpretation do not describe these bytes"
        raise refusal(path, f"Rows x Columns x Frames x samples ({header.rows} x {header.cols} x {header.frames} x "
                            f"{header.photometric}, {header.bits_allocated} bits) need {expected:,} bytes of pixel "
                            f"data, it holds {element_length:,}", f"the file is {what}")


def check_encapsulated(header: PixelHeader, stream_bytes: int, fragment: tuple[int, bytes] | None, syntax: str,
                       video: bool, path: Path) -> None:
    """Encapsulated frames: not more than the bytes allow, and the first frame's codestream agrees.

    Args:
        stream_bytes: bytes of encapsulated data after the offset table.
        fragment: (the first fragment's length, its first bytes), or None when there is none.
    """
    per_frame = 1 if video else ITEM_HEADER + 2
    if header.frames * per_frame > stream_bytes:
        raise refusal(path, f"NumberOfFrames (0028,0008) {header.frames:,} over {stream_bytes:,} bytes of "
                            f"encapsulated pixel data (each frame needs at least {per_frame} bytes)",
                      "the header is damaged: export it again")
    if video or not fragment:
        return
    length, head = fragment
    dims = codestream_size(head, syntax)
    if dims is not None and dims != (header.rows, header.cols):
        raise refusal(path, f"Rows x Columns (0028,0010/0011) say {header.rows} x {header.cols}, the first frame's "
                            f"codestream says {dims[0]} x {dims[1]}", "the header is damaged: export it again")
    if syntax == "1.2.840.10008.1.2.5" and header.rows * header.cols > RLE_MAX_EXPANSION * length:
        raise refusal(path, f"an RLE frame of {length:,} bytes cannot hold {header.rows} x {header.cols} "
                            "pixels (RLE expands at most 64-fold)", "the header is damaged: export it again")


JPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                 "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")


def codestream_size(data: bytes, syntax: str) -> tuple[int, int] | None:
    """(rows, columns) a JPEG (SOF) or JPEG 2000 (SIZ) codestream declares, for those transfer
    syntaxes; None for others, or when the header is not in `data` (the decoder then judges)."""
    if syntax in JPEG_SYNTAXES and data[:2] == b"\xff\xd8":  # JPEG: the first start-of-frame segment
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
            if marker in JPEG_SOF or marker == 0xF7:  # 0xF7: JPEG-LS SOF55
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return height, width
            i += 2 + length
        return None
    if syntax in J2K_SYNTAXES and data[:4] == b"\xff\x4f\xff\x51" and len(data) >= 24:  # SOC, then SIZ
        xsiz, ysiz, xo, yo = struct.unpack(">IIII", data[8:24])
        return ysiz - yo, xsiz - xo
    return None


def check_timing(ds: Any, path: Path) -> None:
    """Frame Time, Frame Time Vector and Cine Rate, where present, are finite and positive."""
    if ds.get("FrameTime") not in (None, ""):
        _positive(ds.FrameTime, "FrameTime (0018,1063)", path)
    for step in list(ds.get("FrameTimeVector") or [])[1:]:
        _positive(step, "a FrameTimeVector (0018,1065) step", path)
    for keyword, tag in (("CineRate", "(0018,0040)"), ("RecommendedDisplayFrameRate", "(0008,2144)")):
        if ds.get(keyword) not in (None, ""):
            _positive(ds.get(keyword), f"{keyword} {tag}", path)


PALETTE_ENTRIES_MAX = 65536
COLORS = ("Red", "Green", "Blue")


def check_palette(ds: Any, path: Path, little_endian: bool) -> None:
    """A PALETTE COLOR file's tables: descriptors of 1-65536 entries of 8 or 16 bits, plain tables
    as long as their descriptor says, segmented tables that expand to no more entries than that
    (an 18 KB segmented table once expanded to 2 GB in memory)."""
    for color in COLORS:
        descriptor = ds.get(f"{color}PaletteColorLookupTableDescriptor")
        if descriptor is None or len(descriptor) != 3:
            raise refusal(path, f"{color}PaletteColorLookupTableDescriptor is {descriptor!r}; expected 3 values",
                          "the header is damaged: export it again")
        entries, bits = int(descriptor[0]) or PALETTE_ENTRIES_MAX, int(descriptor[2])
        if bits not in (8, 16):
            raise refusal(path, f"{color} palette entries are {bits} bits; expected 8 or 16", "the header is damaged")
        size = 1 if bits == 8 else 2
        segmented = ds.get(f"Segmented{color}PaletteColorLookupTableData")
        if segmented is not None:
            dtype = "u1" if size == 1 else ("<u2" if little_endian else ">u2")
            import numpy as np

            words = np.frombuffer(bytes(segmented)[: len(segmented) // size * size], dtype)
            expanded = segmented_length(words.tolist(), entries)
            if expanded > entries:
                raise refusal(path, f"the segmented {color} palette expands to more than its {entries} entries",
                              "the header is damaged: export it again")
            continue
        data = ds.get(f"{color}PaletteColorLookupTableData")
        if data is None or len(data) < entries * size:
            raise refusal(path, f"the {color} palette holds {0 if data is None else len(data)} bytes for {entries} "
                                f"entries of {bits} bits", "the file is damaged: export it again")


def segmented_length(words: list[int], limit: int, start: int = 0, segments: int | None = None,
                     depth: int = 0, budget: list[int] | None = None) -> int:
    """How many entries a segmented palette table expands to (PS3.3 C.7.9.2), counted without
    expanding it; stops as soon as the count passes `limit` (returns more than `limit`)."""
    budget = budget if budget is not None else [4 * len(words) + 64]  # steps, so indirect loops end
    total, i, read = 0, start, 0
    while i + 1 < len(words) and total <= limit and budget[0] > 0:
        budget[0] -= 1
        opcode, length = words[i], words[i + 1]
        i += 2
        if opcode == 0:
            total, i = total + length, i + length
        elif opcode == 1:
            total, i = total + length, i + 1
        elif opcode == 2 and depth < 2 and i + 1 < len(words):
            offset = words[i + 1] << 16 | words[i]
            total += segmented_length(words, limit - total, offset, length, depth + 1, budget)
            i += 2
        else:
            return limit + 1  # an unknown opcode, or indirection nested too deep: refused
        read += 1
        if read == segments:
            break
    return total if budget[0] > 0 else limit + 1


def first_fragment(path: Path, value_offset: int, limit: int = HEAD_BYTES) -> tuple[int, tuple[int, bytes] | None]:
    """(bytes of encapsulated data after the offset table, (the first data fragment's length, its
    first `limit` bytes) or None) read from the file at the pixel data's value offset, without
    reading the rest. Little-endian item headers (encapsulation is always explicit VR little endian)."""
    with open(path, "rb") as f:
        f.seek(value_offset)
        table = f.read(ITEM_HEADER)
        if len(table) < ITEM_HEADER or table[:4] != b"\xfe\xff\x00\xe0":
            return 0, None
        f.seek(struct.unpack("<I", table[4:])[0], 1)  # skip the Basic Offset Table
        start = f.tell()
        item = f.read(ITEM_HEADER)
        size = max(0, path.stat().st_size - start)
        if len(item) < ITEM_HEADER or item[:4] != b"\xfe\xff\x00\xe0":
            return size, None
        length = struct.unpack("<I", item[4:])[0]
        return size, (length, f.read(min(length, limit)))


__all__ = ["MAX_FRAMES", "MAX_FRAME_BYTES", "PixelHeader", "check_encapsulated", "check_native", "check_palette",
           "check_timing", "codestream_size", "first_fragment", "segmented_length"]
