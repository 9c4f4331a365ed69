"""DICOM frames: ultrasound and endoscopy cine loops (multi-frame) and single frames, with their
frame timing and physical pixel size (`pip install 'llm4seg[dicom]'`: pydicom 3 and the pylibjpeg
codecs). The one owner of how a DICOM becomes frames: the runtime's video sources and the core's
dataset folders both read through it (light on purpose: numpy at module level, pydicom inside).

`DicomSource(path)` reads like cv2.VideoCapture (`read`, `release`, `fps`, `frame_count`,
`last_pts_s`) and streams frames one at a time (pydicom's `iter_pixels`: a long cine is never
held whole). Each frame becomes the BGR uint8 the model takes, with the conversion stated in
`conversion`: YBR_FULL / YBR_FULL_422 / YBR_RCT / YBR_ICT to RGB by pydicom, PALETTE COLOR
through its lookup table, MONOCHROME1 inverted, grey replicated to three channels, more than 8
bits scaled from BitsStored to 0-255. Timing: Frame Time, else Frame Time Vector, else Cine Rate
or Recommended Display Frame Rate. Physical size: `SequenceOfUltrasoundRegions` (2D tissue
regions: their bounds, clipped to the image when a file's regions exceed it, and their deltas in
cm, reported in mm), else Pixel Spacing / Imager Pixel Spacing. Masks are kept inside the
tissue regions only (`tissue_mask`); what was found, clipped or missing is listed in `notes`.

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

from llm4seg.errors import ConfigError

# Encapsulated video (PS3.5 8.2.5-8.2.8): the fragments joined are one elementary stream for FFmpeg.
VIDEO_FORMATS = {"1.2.840.10008.1.2.4.100": "mpegvideo", "1.2.840.10008.1.2.4.100.1": "mpegvideo",
                 "1.2.840.10008.1.2.4.101": "mpegvideo", "1.2.840.10008.1.2.4.101.1": "mpegvideo",
                 **{f"1.2.840.10008.1.2.4.{n}": "h264" for n in ("102", "102.1", "103", "103.1", "104", "104.1",
                                                                  "105", "105.1", "106", "106.1")},
                 "1.2.840.10008.1.2.4.107": "hevc", "1.2.840.10008.1.2.4.108": "hevc"}
DICOM_SUFFIXES = (".dcm", ".dicom")
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR")
MAX_FRAME_BYTES = 2**30  # one decoded frame; 8K RGB is 0.1 GiB: more is a damaged header, never allocated
CM_UNITS = 3  # PhysicalUnitsXDirection 3 = cm (DICOM PS3.3 C.8.5.5.1.15)
TISSUE_2D = 1  # RegionSpatialFormat 1 = 2D (tissue or flow), RegionDataType 1 = tissue


def is_dicom_file(path: Path | str) -> bool:
    """True for a file with the DICOM preamble ('DICM' at byte 128) or a .dcm name."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"


def _pydicom() -> Any:
    from llm4seg._optional import require

    return require("pydicom", "reading DICOM (pip install 'llm4seg[dicom]')")


def _refuse(path: Path, what: str, hint: str) -> ConfigError:
    return ConfigError(f"DICOM {path.name}: {what}", hint=hint)


class DicomSource:
    """Frames of a DICOM file as BGR uint8, with timing and physical size (see the module)."""

    reader = "pydicom"

    def __init__(self, path: Path | str) -> None:
        pydicom = _pydicom()
        self.path = Path(path)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self.ds = pydicom.dcmread(str(self.path), defer_size="64 KB")
        except Exception as exc:  # InvalidDicomError, truncated headers
            raise _refuse(self.path, f"cannot be read ({type(exc).__name__}: {exc})",
                          "check the file is a complete DICOM Part 10 file") from None
        ended = [str(w.message) for w in caught if "End of file reached" in str(w.message)]
        if ended:  # pydicom keeps what it read: a cut file would look like one without pixels
            raise _refuse(self.path, f"ends before its data does (truncated: {ended[0].split(' in file')[0]})",
                          "copy the file again from its source")
        ds = self.ds
        self.video_format = VIDEO_FORMATS.get(str(ds.file_meta.get("TransferSyntaxUID", "")))
        if self.video_format is None:
            self._check_pixels(pydicom)
        elif "PixelData" not in ds:
            raise _refuse(self.path, "holds no pixel data (tag (7FE0,0010) absent)", "pass an image or cine")
        self.rows, self.cols = int(ds.Rows), int(ds.Columns)
        self.frame_count = int(ds.get("NumberOfFrames", 1) or 1)
        self.notes: list[str] = []
        self.times_s = self._times()
        self.fps = 0.0 if self.times_s is None or self.frame_count < 2 else \
            (self.frame_count - 1) / max(self.times_s[-1] - self.times_s[0], 1e-9)
        self.conversion = self._conversion()
        self.regions = ultrasound_regions(ds, (self.rows, self.cols), self.notes)
        self.mm_per_px, self.physical_source = physical_size(ds, self.regions, self.notes)
        self.tissue_mask = tissue_mask(self.regions, (self.rows, self.cols))
        self.last_pts_s: float | None = None
        self._index = 0
        self._frames: Iterator[np.ndarray] | None = None
        self._lut: Any = None  # the palette tables as pydicom's apply_color_lut reads them

    def _check_pixels(self, pydicom: Any) -> None:
        ds, path = self.ds, self.path
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            sop = getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID", "unknown"))
            raise _refuse(path, f"holds no pixel data (tag (7FE0,0010) absent; SOP class: {sop})",
                          "pass an image or cine (Ultrasound, Secondary Capture, Video Endoscopic), not a report")
        syntax = ds.file_meta.get("TransferSyntaxUID")
        try:
            decoder = pydicom.pixels.get_decoder(syntax)
        except (NotImplementedError, ValueError) as exc:
            raise _refuse(path, f"transfer syntax {syntax} (0002,0010) has no decoder ({exc})",
                          "a private or unknown syntax: export the study uncompressed or as JPEG/JPEG 2000/RLE") from None
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) or "none listed"  # e.g. "pylibjpeg - requires ..."
            raise _refuse(path, f"transfer syntax {getattr(syntax, 'name', syntax)} needs a codec that is not "
                                f"installed ({missing})",
                          "pip install 'llm4seg[dicom]' (pydicom's pylibjpeg codecs)")
        frame_bytes = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * \
            ((int(ds.get("BitsAllocated", 8)) + 7) // 8)
        if frame_bytes > MAX_FRAME_BYTES:
            raise _refuse(path, f"one frame of Rows x Columns {ds.Rows} x {ds.Columns} (0028,0010/0011) would take "
                                f"{frame_bytes / 2**30:.1f} GiB (at most {MAX_FRAME_BYTES // 2**30} GiB decoded)",
                          "the header is damaged, or this is not a video frame (whole-slide images are not supported)")
        photometric = str(ds.get("PhotometricInterpretation", ""))
        if photometric not in PHOTOMETRIC:
            raise _refuse(path, f"photometric interpretation {photometric!r} (0028,0004) is not one llm4seg converts",
                          f"convert it to one of {', '.join(PHOTOMETRIC)}")
        if not syntax.is_compressed and "PixelData" in ds:
            samples = 2 if photometric == "YBR_FULL_422" else int(ds.get("SamplesPerPixel", 1))  # 4:2:2: Y Y Cb Cr
            expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1)
                        * samples * ((int(ds.BitsAllocated) + 7) // 8))
            have = self.path.stat().st_size
            if expected > have:
                raise _refuse(path, f"Rows x Columns x Frames ({ds.Rows} x {ds.Columns} x "
                                    f"{ds.get('NumberOfFrames', 1)}) need {expected:,} bytes of pixel data, the file "
                                    f"has {have:,}", "the file is truncated: copy it again from its source")

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
            for frame in iter_pixels(str(self.path), as_rgb=True):
                yield self._bgr(frame, apply_color_lut)
        except ConfigError:
            raise
        except Exception as exc:  # truncated fragments, a codec that fails on this data
            raise _refuse(self.path, f"frame {self._index} cannot be decoded ({type(exc).__name__}: {exc})",
                          "the pixel data is damaged or truncated: copy the file again from its source") from None

    def _video_frames(self) -> Iterator[np.ndarray]:
        """Frames of an MPEG-2 / H.264 / HEVC stream kept in the pixel data's fragments."""
        import tempfile

        from llm4seg._optional import require
        from pydicom.encaps import generate_fragments

        av = require("av", "decoding video inside DICOM (pip install 'llm4seg[video]')")
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
                raise _refuse(self.path, f"its {self.video_format} stream cannot be decoded ({exc})",
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
        frame = next(self._frames, None)
        if frame is None:
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
        return {"mm_per_px": self.mm_per_px, "source": self.physical_source, "conversion": self.conversion,
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


MAX_SERIES_FILES = 20000  # a folder bigger than this is a whole archive, not a series


def dicom_files_in(folder: Path | str) -> list[Path]:
    """The DICOM files under `folder` (subfolders too, as PACS exports nest them; DICOMDIR and hidden
    files left out), sorted by path."""
    folder = Path(folder)
    files = []
    for path in sorted(folder.rglob("*")):
        if path.name.startswith(".") or path.name.upper() == "DICOMDIR" or not path.is_file():
            continue
        if is_dicom_file(path):
            files.append(path)
            if len(files) > MAX_SERIES_FILES:
                raise _refuse(folder, f"holds more than {MAX_SERIES_FILES} DICOM files",
                              "pass the folder of one series (or one file), not a whole archive")
    return files


class DicomSeriesSource:
    """The single-frame images of one DICOM series in a folder, played as frames in Instance
    Number order (a folder holding one file plays that file: `open_dicom`). Timing from the
    images' Content Time (else Acquisition Time) where every image has one and it increases;
    geometry (regions, pixel size) from the first image, checked against the others."""

    reader = "pydicom"

    def __init__(self, folder: Path | str, files: list[Path]) -> None:
        pydicom = _pydicom()
        self.path = Path(folder)
        headers = []
        for path in files:
            try:
                headers.append((path, pydicom.dcmread(str(path), stop_before_pixels=True)))
            except Exception as exc:
                raise _refuse(path, f"cannot be read ({type(exc).__name__}: {exc})",
                              "check the file is a complete DICOM Part 10 file, or move it out of the folder") from None
        _one_series(self.path, headers)
        headers.sort(key=lambda item: (int(item[1].get("InstanceNumber") or 0), str(item[0])))
        self.files = [path for path, _ in headers]
        self.sources = [DicomSource(path) for path in self.files]  # headers only: pixels are read frame by frame
        first = self.sources[0]
        self.rows, self.cols, self.frame_count = first.rows, first.cols, len(self.sources)
        self.notes = list(first.notes) + _series_notes(self.sources)
        self.conversion, self.regions, self.tissue_mask = first.conversion, first.regions, first.tissue_mask
        self.mm_per_px, self.physical_source = first.mm_per_px, first.physical_source
        self.ds = first.ds
        self.times_s = _series_times([h for _, h in headers], self.notes)
        self.fps = 0.0 if self.times_s is None or self.frame_count < 2 else \
            (self.frame_count - 1) / max(self.times_s[-1] - self.times_s[0], 1e-9)
        self.last_pts_s: float | None = None
        self._index = 0

    def read(self) -> tuple[bool, np.ndarray | None]:
        """(True, BGR frame) for the next image of the series, (False, None) after the last."""
        if self._index >= self.frame_count:
            return False, None
        ok, frame = self.sources[self._index].read()
        if not ok:
            raise _refuse(self.files[self._index], "holds no frame", "remove it from the series folder")
        self.last_pts_s = None if self.times_s is None else float(self.times_s[self._index])
        self._index += 1
        return True, frame

    def release(self) -> None:
        """Stop reading."""
        for source in self.sources:
            source.release()

    def instance_of(self, number: int) -> tuple[Any, int]:
        """(the header of the image that is frame `number` (1-based), 1)."""
        return self.sources[number - 1].ds, 1

    @property
    def instances(self) -> list[Any]:
        """The headers of the series' images, in frame order."""
        return [source.ds for source in self.sources]

    def physical(self) -> dict[str, Any]:
        """What the reports say about this series' geometry and conversion."""
        return {**self.sources[0].physical(), "notes": self.notes, "series_files": len(self.files)}


def _one_series(folder: Path, headers: list[tuple[Path, Any]]) -> None:
    """Refuse a folder of several series, of multi-frame files among others, or of mixed sizes."""
    series: dict[str, list[Path]] = {}
    for path, ds in headers:
        series.setdefault(str(ds.get("SeriesInstanceUID", "none")), []).append(path)
    if len(series) > 1:
        listed = "; ".join(f"{uid} ({len(paths)} files, e.g. {paths[0].name})" for uid, paths in list(series.items())[:5])
        raise _refuse(folder, f"holds {len(series)} series: {listed}",
                      "pass the folder of one series, or one file")
    multi = [path.name for path, ds in headers if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi:
        raise _refuse(folder, f"holds multi-frame files ({', '.join(multi[:5])}) among {len(headers)} files",
                      "pass each cine file on its own")
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in headers if "Rows" in ds}
    if len(sizes) > 1:
        raise _refuse(folder, f"holds images of {len(sizes)} sizes ({sorted(sizes)[:4]}, rows x columns)",
                      "pass the folder of one series whose images share a size")


def _series_notes(sources: list[DicomSource]) -> list[str]:
    sizes = {s.mm_per_px for s in sources}
    numbers = [int(s.ds.get("InstanceNumber") or 0) for s in sources]
    notes = []
    if len(sizes) > 1:
        notes.append(f"the series' images have {len(sizes)} pixel sizes: areas in mm^2 use the first image's")
    if len(set(numbers)) < len(numbers):
        notes.append("Instance Numbers repeat (or are missing): images with one number are played in file-name order")
    return notes


def _series_times(headers: list[Any], notes: list[str]) -> list[float] | None:
    """Seconds from the first image, from Content Time (else Acquisition Time), where every image
    has one and they increase; None (said in `notes`) otherwise."""
    for keyword in ("ContentTime", "AcquisitionTime"):
        values = [_seconds_of_day(ds.get(keyword)) for ds in headers]
        if all(v is not None for v in values) and all(b > a for a, b in zip(values, values[1:])):
            return [v - values[0] for v in values]
    notes.append("the series' images have no increasing Content Time or Acquisition Time: frame times unknown")
    return None


def _seconds_of_day(value: Any) -> float | None:
    """DICOM TM ('HHMMSS.FFFFFF', parts optional) -> seconds after midnight; None when absent or bad."""
    text = str(value or "").strip().replace(":", "")
    if len(text) < 2 or not text.split(".")[0].isdigit():
        return None
    hh, mm = int(text[:2]), int(text[2:4] or 0)
    ss = float(text[4:] or 0)
    return hh * 3600 + mm * 60 + ss


def open_dicom(path: Path | str) -> DicomSource | DicomSeriesSource:
    """A DICOM file, or a folder holding one series (one file: that file)."""
    path = Path(path)
    if path.is_file():
        return DicomSource(path)
    files = dicom_files_in(path)
    if not files:
        raise _refuse(path, "holds no DICOM file", "pass a folder with .dcm files (or PACS files with the DICM preamble)")
    return DicomSource(files[0]) if len(files) == 1 else DicomSeriesSource(path, files)


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


__all__ = ["DICOM_SUFFIXES", "DicomSeriesSource", "DicomSource", "PHOTOMETRIC", "area_mm2", "dicom_files_in",
           "is_dicom_file", "open_dicom", "physical_size", "tissue_mask", "ultrasound_regions"]
