"""One DICOM file as a source of frames.

`DicomSource(path)` reads like cv2.VideoCapture (`read`, `release`, `fps`, `frame_count`,
`last_pts_s`) and streams frames one at a time (pydicom's `iter_pixels`: a long cine is never
held whole). Each frame becomes the BGR uint8 the model takes, with the conversion stated in
`conversion`: 8-bit YBR_FULL / YBR_FULL_422 to BGR by OpenCV when it agrees with pydicom's
conversion on the first frame (within 1 level; about 4x less time per frame), else YBR to RGB by
pydicom, as for YBR_RCT / YBR_ICT; PALETTE COLOR
through its lookup table, MONOCHROME1 inverted, grey replicated to three channels, more than 8
bits scaled from BitsStored to 0-255. Timing: Frame Time, else Frame Time Vector, else Cine Rate
or Recommended Display Frame Rate. Tissue regions and pixel size: `geometry`, listed with what
was found, clipped or missing in `notes`.

Encapsulated MPEG-2 / H.264 / HEVC (Video Endoscopic and other video storage): the fragments are
joined into one elementary stream and decoded by FFmpeg through PyAV (H.264 tested; the others
NOT RUN: no sample file here).

Refused with the file, the tag and the fix: no pixel data (SR, KOS), a transfer syntax with no
decoder (the package named) or a private one, an unknown photometric interpretation, pixel data
shorter than Rows x Columns x Frames say, a file cut short, a frame larger than 1 GiB decoded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from llm4seg.dicom.files import pydicom_module, refusal
from llm4seg.dicom.geometry import frame_geometry
from llm4seg.dicom.header import (SAMPLES, PixelHeader, check_encapsulated, check_native, check_palette, check_timing,
                                  first_fragment)
from llm4seg.errors import ConfigError

# Encapsulated video (PS3.5 8.2.5-8.2.8): the fragments joined are one elementary stream for FFmpeg.
VIDEO_FORMATS = {"1.2.840.10008.1.2.4.100": "mpegvideo", "1.2.840.10008.1.2.4.100.1": "mpegvideo",
                 "1.2.840.10008.1.2.4.101": "mpegvideo", "1.2.840.10008.1.2.4.101.1": "mpegvideo",
                 **{f"1.2.840.10008.1.2.4.{n}": "h264" for n in ("102", "102.1", "103", "103.1", "104", "104.1",
                                                                  "105", "105.1", "106", "106.1")},
                 "1.2.840.10008.1.2.4.107": "hevc", "1.2.840.10008.1.2.4.108": "hevc"}
PHOTOMETRIC = tuple(SAMPLES)  # the photometric interpretations converted to BGR
FAST_YBR = ("YBR_FULL", "YBR_FULL_422")  # full-range YCbCr, which OpenCV converts with the same matrix
YBR_TOLERANCE = 1  # levels between OpenCV's and pydicom's rounding of one conversion


def bgr_from_ybr_full(frame: np.ndarray) -> np.ndarray:
    """BGR uint8 from a full-range Y, Cb, Cr uint8 frame (PS3.3 C.7.6.3.1.2), by OpenCV."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame[..., [0, 2, 1]]), cv2.COLOR_YCrCb2BGR)


class DicomSource:
    """Frames of a DICOM file as BGR uint8, with timing and physical size (see the module)."""

    reader = "pydicom"

    def __init__(self, path: Path | str) -> None:
        pydicom = pydicom_module()
        self.path = Path(path)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.ds = pydicom.dcmread(str(self.path), defer_size="64 KB")
        except Exception as exc:  # InvalidDicomError, truncated headers
            raise refusal(self.path, f"cannot be read ({type(exc).__name__}: {exc})",
                          "check the file is a complete DICOM Part 10 file") from None
        ended = [str(w.message) for w in caught if "End of file reached" in str(w.message)]
        if ended:  # pydicom keeps what it read: a cut file would look like one without pixels
            raise refusal(self.path, f"ends before its data does (truncated: {ended[0].split(' in file')[0]})",
                          "copy the file again from its source")
        ds = self.ds
        self.video_format = VIDEO_FORMATS.get(str(ds.file_meta.get("TransferSyntaxUID", "")))
        if self.video_format is None:
            self._check_pixels(pydicom)
        elif "PixelData" not in ds:
            raise refusal(self.path, "holds no pixel data (tag (7FE0,0010) absent)", "pass an image or cine")
        else:
            self.header = PixelHeader.read(ds, self.path, video=True)
            self._check_sizes(ds.file_meta.get("TransferSyntaxUID"), video=True)
        check_timing(ds, self.path)
        self.rows, self.cols, self.frame_count = self.header.rows, self.header.cols, self.header.frames
        self.notes: list[str] = []
        self.times_s = self._times()
        self.fps = 0.0 if self.times_s is None or self.frame_count < 2 else \
            (self.frame_count - 1) / max(self.times_s[-1] - self.times_s[0], 1e-9)
        self.conversion = self._conversion()
        self._by_opencv = self.video_format is None and self._ybr_by_opencv()
        self.geometry, self.regions = frame_geometry(ds, (self.rows, self.cols), self.path)
        self.notes += list(self.geometry.notes)
        self.last_pts_s: float | None = None
        self._index = 0
        self._frames: Iterator[np.ndarray] | None = None
        self._lut: Any = None  # the palette tables as pydicom's apply_color_lut reads them

    def _check_pixels(self, pydicom: Any) -> None:
        ds, path = self.ds, self.path
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            sop = getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID", "unknown"))
            raise refusal(path, f"holds no pixel data (tag (7FE0,0010) absent; SOP class: {sop})",
                          "pass an image or cine (Ultrasound, Secondary Capture, Video Endoscopic), not a report")
        syntax = ds.file_meta.get("TransferSyntaxUID")
        try:
            decoder = pydicom.pixels.get_decoder(syntax)
        except (NotImplementedError, ValueError) as exc:
            raise refusal(path, f"transfer syntax {syntax} (0002,0010) has no decoder ({exc})",
                          "a private or unknown syntax: export the study uncompressed or as JPEG/JPEG 2000/RLE") from None
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) or "none listed"  # e.g. "pylibjpeg - requires ..."
            raise refusal(path, f"transfer syntax {getattr(syntax, 'name', syntax)} needs a codec that is not "
                                f"installed ({missing})",
                          "pip install 'llm4seg[dicom]' (pydicom's pylibjpeg codecs)")
        self.header = PixelHeader.read(ds, path)
        self._check_sizes(syntax, video=False)
        if self.header.photometric == "PALETTE COLOR":
            check_palette(ds, path, getattr(syntax, "is_little_endian", True))

    def _check_sizes(self, syntax: Any, video: bool) -> None:
        """The declared sizes against the pixel data's bytes (llm4seg/dicom/header.py), before any decode."""
        element = self.ds.get_item("PixelData", keep_deferred=True)
        if element is None:
            return
        length, offset = getattr(element, "length", None), getattr(element, "value_tell", None)
        if length is None or offset is None:  # a converted element (not read from this file): its bytes
            length, offset = len(self.ds.PixelData), None
        if length != 0xFFFFFFFF and not getattr(syntax, "is_compressed", False):
            check_native(self.header, length, self.path)
            have = self.path.stat().st_size - (offset or 0)
            if offset is not None and length > have:
                raise refusal(self.path, f"its pixel data (7FE0,0010) says {length:,} bytes, the file holds {have:,} "
                                         "after its start (truncated)", "copy the file again from its source")
        elif offset is not None:
            stream_bytes, fragment = first_fragment(self.path, offset)
            check_encapsulated(self.header, stream_bytes, fragment, str(syntax), video, self.path)

    def _times(self) -> list[float] | None:
        ds, n = self.ds, int(self.ds.get("NumberOfFrames", 1) or 1)
        if ds.get("FrameTime"):
            return [i * float(ds.FrameTime) / 1000.0 for i in range(n)]
        vector = ds.get("FrameTimeVector")
        if vector:
            steps = [float(v) / 1000.0 for v in vector]
            return list(np.cumsum([0.0] + steps[1:n])) if len(steps) >= n else None
        rate = ds.get("CineRate") or ds.get("RecommendedDisplayFrameRate")
        if rate:
            return [i / float(rate) for i in range(n)]
        self.notes.append("no Frame Time, Frame Time Vector or Cine Rate: frame times unknown")
        return None

    def _conversion(self) -> str:
        if self.video_format is not None:
            return f"encapsulated {self.video_format} stream decoded by FFmpeg (PyAV) to BGR"
        photometric = str(self.ds.PhotometricInterpretation)
        bits = int(self.ds.get("BitsStored", 8))
        steps = {"MONOCHROME1": "MONOCHROME1 inverted, grey to BGR", "MONOCHROME2": "grey to BGR",
                 "RGB": "RGB to BGR", "PALETTE COLOR": "PALETTE COLOR through its lookup table to RGB, to BGR"}
        text = steps.get(photometric, f"{photometric} to RGB (pydicom), to BGR")
        return text + (f"; {bits}-bit values scaled to 0-255" if bits > 8 else "")

    def _iterate(self) -> Iterator[np.ndarray]:
        if self.video_format is not None:
            yield from self._video_frames()
            return
        from pydicom.pixels import apply_color_lut, iter_pixels

        try:
            for frame in iter_pixels(str(self.path), as_rgb=not self._by_opencv):
                yield bgr_from_ybr_full(frame) if self._by_opencv else self._bgr(frame, apply_color_lut)
        except ConfigError:
            raise
        except Exception as exc:  # truncated fragments, a codec that fails on this data
            raise refusal(self.path, f"frame {self._index} cannot be decoded ({type(exc).__name__}: {exc})",
                          "the pixel data is damaged or truncated: copy the file again from its source") from None

    def _ybr_by_opencv(self) -> bool:
        """Whether this file's YBR frames are converted by OpenCV: 8-bit full-range YBR whose first
        frame, converted so, agrees with pydicom's conversion (a decoder plugin that returns RGB
        itself, or any other difference, keeps pydicom's path). Recorded in `conversion`."""
        if str(self.ds.PhotometricInterpretation) not in FAST_YBR or self.header.bits_allocated != 8:
            return False
        from pydicom.pixels import iter_pixels

        try:
            reference = next(iter_pixels(str(self.path), indices=[0], as_rgb=True))
            raw = next(iter_pixels(str(self.path), indices=[0], as_rgb=False))
        except Exception:  # a frame that cannot be decoded is refused when it is read, with its index
            return False
        if raw.shape != reference.shape or raw.ndim != 3:
            return False
        ours = bgr_from_ybr_full(raw)[..., ::-1].astype(np.int16)
        agree = int(np.abs(ours - reference.astype(np.int16)).max()) <= YBR_TOLERANCE
        if agree:
            self.conversion = f"{self.ds.PhotometricInterpretation} to BGR (OpenCV, checked against pydicom on frame 0)"
        return agree

    def _video_frames(self) -> Iterator[np.ndarray]:
        """Frames of an MPEG-2 / H.264 / HEVC stream kept in the pixel data's fragments."""
        import tempfile

        from llm4seg._optional import require
        from pydicom.encaps import generate_fragments

        av = require("av", "decoding video inside DICOM")
        with tempfile.TemporaryDirectory(prefix="llm4seg-dicom-") as tmp:
            stream_path = Path(tmp) / f"stream.{self.video_format}"
            with open(stream_path, "wb") as f:
                for fragment in generate_fragments(self.ds.PixelData):
                    f.write(fragment)
            try:
                with av.open(str(stream_path), format=self.video_format) as container:
                    for frame in container.decode(video=0):
                        yield frame.to_ndarray(format="bgr24")
            except av.error.FFmpegError as exc:
                raise refusal(self.path, f"its {self.video_format} stream cannot be decoded ({exc})",
                              "the encapsulated video is damaged: export the cine again") from None

    def _bgr(self, frame: np.ndarray, apply_color_lut: Any) -> np.ndarray:
        ds = self.ds
        photometric = str(ds.PhotometricInterpretation)
        if photometric == "PALETTE COLOR":
            if self._lut is None:
                self._lut = palette_lut_source(ds)
            frame = apply_color_lut(frame, self._lut)
            if frame.dtype != np.uint8:
                frame = (frame.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
        bits = int(ds.get("BitsStored", 8))
        if frame.dtype != np.uint8 and photometric != "PALETTE COLOR":
            frame = np.clip(frame.astype(np.float64) / (2 ** bits - 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if photometric == "MONOCHROME1":
            frame = 255 - frame
        if frame.ndim == 2:
            frame = np.repeat(frame[..., None], 3, axis=2)
        return np.ascontiguousarray(frame[..., ::-1])

    def read(self) -> tuple[bool, np.ndarray | None]:
        """(True, BGR frame) for the next frame, (False, None) after the last."""
        if self._frames is None:
            self._frames = self._iterate()
        frame = next(self._frames, None) if self._index < self.frame_count else None
        if frame is None:
            if self._index == self.frame_count and next(self._frames, None) is not None:
                self.notes.append(f"the pixel data holds more frames than NumberOfFrames ({self.frame_count}): "
                                  "only those were read")
            self._frames = iter(())
            return False, None
        self.last_pts_s = None if self.times_s is None else float(self.times_s[self._index])
        self._index += 1
        return True, frame

    def release(self) -> None:
        """Stop reading (the file is closed by pydicom after each read)."""
        self._frames = None

    def instance_of(self, number: int) -> tuple[Any, int]:
        """(the header of the instance holding frame `number` (1-based), its frame number there)."""
        return self.ds, number

    @property
    def instances(self) -> list[Any]:
        """The headers of the instances the frames come from (one here)."""
        return [self.ds]

    def physical(self) -> dict[str, Any]:
        """What the reports say about this file's geometry and conversion."""
        return {"mm_per_px": self.geometry.mm_per_px, "source": self.geometry.source, "conversion": self.conversion,
                "tissue_regions": [r["bounds_xyxy"] for r in self.regions if r["tissue"]],
                "notes": self.notes}


PALETTE_DATA = ("RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
                "BluePaletteColorLookupTableData", "AlphaPaletteColorLookupTableData")


def palette_lut_source(ds: Any) -> Any:
    """The dataset to give pydicom's apply_color_lut: `ds` itself, or for a big-endian file a copy
    whose 16-bit palette tables are little endian. pydicom 3.0.2 reads (non-segmented) table
    bytes in the machine's order whatever the file's, which made pydicom-data's big-endian
    ultrasound (OBXXXX1A_expb.dcm) nearly black."""
    little = ds.file_meta.get("TransferSyntaxUID")
    if little is None or getattr(little, "is_little_endian", True):
        return ds
    import copy

    fixed = copy.copy(ds)
    entries = int(ds.RedPaletteColorLookupTableDescriptor[0] or 2**16) if "RedPaletteColorLookupTableDescriptor" \
        in ds else 0
    for keyword in PALETTE_DATA:
        data = ds.get(keyword)
        if data is not None and entries and len(data) == 2 * entries:  # 16-bit entries: swap each pair
            setattr(fixed, keyword, np.frombuffer(data, ">u2").astype("<u2").tobytes())
    return fixed
