"""Decoding image and mask files with every failure named, truncation included.

OpenCV decodes a truncated JPEG without an error (libjpeg fills the missing part with grey and
prints one line without the file name), so the byte stream is checked before decoding: a JPEG
must end its last scan with an EOI marker, a PNG must carry its IEND chunk.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from llm4seg.dicom import is_dicom_file


def truncation_problem(data: bytes) -> str | None:
    """Why this encoded image is incomplete, or None when it looks whole."""
    if data[:2] == b"\xff\xd8":  # JPEG: the last scan (SOS) must be followed by the end marker (EOI)
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            return "truncated JPEG (no end-of-image marker after the last scan)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        return "truncated PNG (no IEND chunk)"
    return None


# A decoded image above this many pixels is refused from its header, before decoding: a 1 MB PNG can
# declare 30000 x 30000 and take 5 GB and a minute to decode (a decompression bomb). 100 M pixels
# is 10000 x 10000, far above any ultrasound or endoscopy frame.
MAX_IMAGE_PIXELS = 100_000_000
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the file's header declares them (PNG, JPEG, BMP; TIFF and others through
    Pillow's header-only open where it is installed), or None when the header does not say."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"BM" and len(data) >= 26:
        return abs(int.from_bytes(data[18:22], "little", signed=True)), abs(int.from_bytes(data[22:26], "little", signed=True))
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
            if marker in _JPEG_SOF:
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + length
        return None
    try:
        import io

        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return image.size
    except Exception:  # noqa: BLE001  (not an image Pillow knows: OpenCV decides)
        return None


def _imdecode_noting_libjpeg(data: bytes, flags: int) -> tuple[np.ndarray | None, str]:
    """cv2.imdecode of a JPEG, with what libjpeg writes to file descriptor 2 caught: a JPEG corrupted
    in the middle (its end marker intact) decodes to garbage, and libjpeg's "Corrupt JPEG data" line
    is the only sign. Other text it writes is passed on to stderr."""
    import sys

    from llm4seg.fileio import stderr_fd_captured

    with stderr_fd_captured() as caught:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    text = "".join(caught)
    corrupt = [line for line in text.splitlines() if "Corrupt JPEG data" in line or "Premature end" in line]
    if text and not corrupt:
        sys.stderr.write(text)
    return array, "; ".join(corrupt)


def _read(path: Path) -> tuple[bytes | None, str]:
    try:
        return Path(path).read_bytes(), ""
    except OSError as exc:
        return None, f"cannot read {Path(path).name}: {exc.strerror or exc}"


def decode(path: Path, flags: int, data: bytes | None = None) -> tuple[np.ndarray | None, str]:
    """(array, '') or (None, reason) for an image file decoded with cv2 `flags` (`data`: its bytes,
    when the caller has read them already)."""
    if data is None:
        data, reason = _read(path)
        if data is None:
            return None, reason
    if not data:
        return None, f"{Path(path).name} is empty (0 bytes)"
    problem = truncation_problem(data)
    if problem:
        return None, f"{Path(path).name}: {problem}"
    size = declared_size(data)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        return None, (f"{Path(path).name} declares {size[0]} x {size[1]} pixels, above the {MAX_IMAGE_PIXELS:,} "
                      "llm4seg decodes (refused from its header, not decoded)")
    if data[:2] == b"\xff\xd8":
        array, warning = _imdecode_noting_libjpeg(data, flags)
        if warning:  # garbage pixels in the middle of the image, reported only on stderr by libjpeg
            return None, f"{Path(path).name}: corrupt JPEG data (libjpeg: {warning})"
    else:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None or array.size == 0:
        return None, f"{Path(path).name} cannot be decoded as an image"
    return array, ""


def high_bit_depth(data: bytes) -> bool:
    """True for an encoded image stored with more than 8 bits per sample (16-bit PNG or TIFF)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24:
        return data[24] == 16
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        return array is not None and array.dtype != np.uint8
    return False


def read_image_rgb(path: Path) -> tuple[np.ndarray | None, str]:
    """uint8 (H, W, 3) RGB (grey replicated to three channels), or (None, reason). Images of more than
    8 bits are refused: 12-bit data in a 16-bit file would be scaled as 16-bit (nearly black), and
    the right scale cannot be read from the file."""
    if is_dicom_file(path):
        return read_dicom_rgb(path)
    raw, reason = _read(path)
    if raw is None:
        return None, reason
    if high_bit_depth(raw):
        return None, (f"{Path(path).name} stores 16-bit samples; llm4seg trains on 8-bit images and does not "
                      "guess the device's bit depth (convert them: e.g. 12-bit data, value // 16)")
    data, reason = decode(path, cv2.IMREAD_COLOR, raw)
    return (None, reason) if data is None else (cv2.cvtColor(data, cv2.COLOR_BGR2RGB), "")


def read_dicom_rgb(path: Path) -> tuple[np.ndarray | None, str]:
    """A single-frame DICOM image as uint8 RGB (the conversions of llm4seg/dicom/, the one owner),
    or (None, reason): a cine is not one dataset image, a file pydicom refuses gives its reason."""
    from llm4seg.errors import Llm4SegError
    from llm4seg.dicom import DicomSource

    try:
        source = DicomSource(path)
        if source.frame_count != 1:
            return None, (f"{Path(path).name} is a {source.frame_count}-frame DICOM cine; a dataset holds one image "
                          "per file (segment cines with `llm4seg video`)")
        ok, frame = source.read()
    except Llm4SegError as exc:
        return None, exc.message
    return (cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), "") if ok else (None, f"{Path(path).name} holds no frame")


def palette_indices(data: bytes) -> np.ndarray | None:
    """The palette indices of a palette (colour type 3) PNG, or None for any other file. OpenCV
    would return the palette colours' grey values: a palette whose index 0 is white inverts the mask."""
    if not (data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[25] == 3):
        return None
    import io

    from llm4seg._optional import require

    image = require("PIL.Image", "palette PNG masks")
    with image.open(io.BytesIO(data)) as png:
        return np.array(png) if png.mode == "P" else None


def read_mask_raw(path: Path) -> tuple[np.ndarray | None, str]:
    """The mask's stored values, single channel, 8 or 16 bit; for palette PNGs, the palette index."""
    raw, reason = _read(path)
    if raw is None:
        return None, reason
    mask, reason = decode(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH, raw)
    if mask is not None:
        indices = palette_indices(raw)
        if indices is not None:
            return indices.astype(np.uint8), ""
    return mask, reason


__all__ = ["MAX_IMAGE_PIXELS", "declared_size", "decode", "read_image_rgb", "read_mask_raw", "truncation_problem"]
