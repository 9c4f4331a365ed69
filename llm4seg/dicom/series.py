"""A folder of one DICOM series as a source: single-frame images played in Instance Number order,
Content Time (else Acquisition Time) as timestamps; `open_dicom` takes a file or such a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.dicom.files import dicom_files_in, pydicom_module, refusal
from llm4seg.dicom.source import DicomSource


class DicomSeriesSource:
    """The single-frame images of one DICOM series in a folder, played as frames in Instance
    Number order (a folder holding one file plays that file: `open_dicom`). Timing from the
    images' Content Time (else Acquisition Time) where every image has one and it increases;
    geometry (regions, pixel size) from the first image, checked against the others."""

    reader = "pydicom"

    def __init__(self, folder: Path | str, files: list[Path]) -> None:
        pydicom = pydicom_module()
        self.path = Path(folder)
        headers = []
        for path in files:
            try:
                headers.append((path, pydicom.dcmread(str(path), stop_before_pixels=True)))
            except Exception as exc:
                raise refusal(path, f"cannot be read ({type(exc).__name__}: {exc})",
                              "check the file is a complete DICOM Part 10 file, or move it out of the folder") from None
        _one_series(self.path, headers)
        headers.sort(key=lambda item: (int(item[1].get("InstanceNumber") or 0), str(item[0])))
        self.files = [path for path, _ in headers]
        self.sources = [DicomSource(path) for path in self.files]  # headers only: pixels are read frame by frame
        first = self.sources[0]
        self.rows, self.cols, self.frame_count = first.rows, first.cols, len(self.sources)
        self.notes = list(first.notes) + _series_notes(self.sources)
        self.conversion, self.regions, self.geometry = first.conversion, first.regions, first.geometry
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
            raise refusal(self.files[self._index], "holds no frame", "remove it from the series folder")
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
        raise refusal(folder, f"holds {len(series)} series: {listed}",
                      "pass the folder of one series, or one file")
    multi = [path.name for path, ds in headers if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi:
        raise refusal(folder, f"holds multi-frame files ({', '.join(multi[:5])}) among {len(headers)} files",
                      "pass each cine file on its own")
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in headers if "Rows" in ds}
    if len(sizes) > 1:
        raise refusal(folder, f"holds images of {len(sizes)} sizes ({sorted(sizes)[:4]}, rows x columns)",
                      "pass the folder of one series whose images share a size")


def _series_notes(sources: list[DicomSource]) -> list[str]:
    sizes = {s.geometry.mm_per_px for s in sources}
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
        raise refusal(path, "holds no DICOM file", "pass a folder with .dcm files (or PACS files with the DICM preamble)")
    return DicomSource(files[0]) if len(files) == 1 else DicomSeriesSource(path, files)
