"""A DICOM Segmentation (SEG) per chosen frame of a DICOM source, naming the algorithm that made it.

Why one SEG per frame: highdicom (and the SEG IOD's plane positions) need a Frame of Reference to
map a multi-frame segmentation onto a multi-frame source; ultrasound and endoscopy cines have none
(highdicom#284 refuses them). So each SEG is built by highdicom against a single-frame view of the
source's header, and its references are then pointed back at the real instance: the source's SOP
class, SOP instance and `ReferencedFrameNumber` (the frame, 1-based), in the Referenced Series
Sequence and in every Source Image Sequence. The algorithm is named in the SEG (name, version and
the manifest entry's `entry_sha256` as a parameter), and each SEG says which frame it holds.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from llm4seg.errors import ConfigError

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"  # single-frame Ultrasound Image Storage: highdicom's view
SEG_SERIES_NUMBER = 9701


@dataclass(frozen=True)
class Algorithm:
    """What made the masks, as the SEG names it."""

    name: str  # e.g. "llm4seg cmunext_llm"
    version: str  # llm4seg's version
    manifest_sha256: str  # the manifest entry's entry_sha256 (the exported model's seal)
    segment_label: str = "lesion"

    @classmethod
    def from_entry(cls, entry: Any) -> "Algorithm":
        """The algorithm of an exported model's manifest entry (a ManifestEntry: name and seal)."""
        return cls(f"llm4seg {entry.model_name}", runtime_version(), str(entry.optional("entry_sha256") or "unsealed"))


def runtime_version() -> str:
    """The installed llm4seg's version (package metadata: the runtime imports no core package code)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llm4seg")
    except PackageNotFoundError:
        return "unknown"


def frame_numbers_from_text(text: str, frame_count: int) -> list[int]:
    """'1,5-7' or 'all' -> sorted 1-based frame numbers, each checked against the frame count.

    Raises:
        ConfigError naming the value out of range or not understood.
    """
    if text.strip().lower() == "all":
        return list(range(1, frame_count + 1))
    numbers: set[int] = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"frame list {text!r}: {part!r} is not a frame number or range",
                              hint="give 1-based frame numbers like '1,15,30' or '10-20', or 'all'") from None
        if not 1 <= first <= last <= frame_count:
            raise ConfigError(f"frame list {text!r}: {part!r} is outside frames 1-{frame_count} of the source",
                              hint=f"DICOM frame numbers start at 1; this source has {frame_count} frame(s)")
        numbers.update(range(first, last + 1))
    if not numbers:
        raise ConfigError(f"frame list {text!r} names no frame", hint="e.g. --seg-frames 1 or --seg-frames all")
    return sorted(numbers)


def _highdicom() -> Any:
    from llm4seg._optional import require

    return require("highdicom", "writing DICOM SEG")


# Patient and study attributes of type 2 that highdicom copies from the source into the SEG.
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _single_frame_view(source: Any) -> Any:
    """The source's header as a single-frame US image (what highdicom accepts without a Frame of
    Reference); pixel data and frame timing left out."""
    view = copy.deepcopy(source)
    for keyword in ("PixelData", "NumberOfFrames", "FrameIncrementPointer", "FrameTimeVector", "FrameTime"):
        if keyword in view:
            delattr(view, keyword)
    view.SOPClassUID = US_IMAGE_STORAGE
    if "PixelSpacing" in view and "SliceThickness" not in view:  # highdicom's Pixel Measures want both: the
        del view.PixelSpacing  # SEG lies on the source's pixel grid, whose spacing the source keeps
    for keyword in TYPE2_COPIED:  # type 2 (may be empty, must be present): empty where the source left them out
        if keyword not in view:
            setattr(view, keyword, None)
    return view


def _point_at_source(item: Any, source: Any, frame_number: int | None) -> int:
    """Rewrite every reference to the view into one to the source instance; the frame number goes
    into Source Image Sequence items (where the SEG IOD has it; the Referenced Series Sequence has
    none: dciodvfy flags it there). Returns how many references were rewritten."""
    count = 0
    for element in item:
        if element.VR != "SQ":
            continue
        for child in element.value:
            if child.get("ReferencedSOPInstanceUID") == source.SOPInstanceUID:
                child.ReferencedSOPClassUID = source.SOPClassUID
                if frame_number is not None and element.keyword == "SourceImageSequence":
                    child.ReferencedFrameNumber = frame_number
                count += 1
            count += _point_at_source(child, source, frame_number)
    return count


def seg_for_frame(source: Any, frame_number: int, mask: np.ndarray, algorithm: Algorithm, series_uid: str,
                  instance_number: int) -> Any:
    """A binary DICOM Segmentation of one frame of `source` (a pydicom Dataset, header enough).

    Args:
        frame_number: the source frame the mask belongs to, 1-based.
        mask: (Rows, Columns) 0/1 or bool, the frame's mask.
        series_uid: the SEG series (one per run, shared by its SEGs).

    Returns:
        the SEG as a pydicom Dataset (highdicom's), referencing the source's study, series, SOP
        instance and frame.
    """
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    check_identity(source)
    if mask.shape != (int(source.Rows), int(source.Columns)):
        raise ConfigError(f"mask of frame {frame_number} is {mask.shape[1]}x{mask.shape[0]}, the source "
                          f"{source.Columns}x{source.Rows}", hint="give the mask at the source frame's size")
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=codes.DCM.ArtificialIntelligence, version=algorithm.version,
        parameters={"manifest_entry_sha256": algorithm.manifest_sha256, "source_frame": str(frame_number)})
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=algorithm.segment_label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=identification)
    with warnings.catch_warnings(), _quiet("highdicom"):  # its remarks (a one-part name, an empty mask) are
        warnings.simplefilter("ignore", UserWarning)  # not the user's to read: DicomResults says them in our words
        seg = hd.seg.Segmentation(
            source_images=[_single_frame_view(source)], pixel_array=mask.astype(bool)[None],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
            series_instance_uid=series_uid, series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(),
            instance_number=instance_number, manufacturer="llm4seg", manufacturer_model_name=algorithm.name,
            software_versions=algorithm.version, device_serial_number="none",
            series_description=f"{algorithm.name} segmentation", content_label="LLM4SEG",
            content_description=f"frame {frame_number} of {source.SOPInstanceUID}"[:64])
    multi = "NumberOfFrames" in source  # a multi-frame IOD: its frames are referenced by number
    if _point_at_source(seg, source, frame_number if multi else None) == 0:
        raise ConfigError("the SEG built for the source references no source instance",
                          hint="report this: highdicom's reference layout changed")
    _no_frame_in_referenced_series(seg)
    return type2c_present(seg)


def _no_frame_in_referenced_series(seg: Any) -> None:
    """highdicom shares one reference item between the Source Image Sequence and the Referenced
    Series Sequence: the frame number belongs to the first only (dciodvfy flags it in the second)."""
    for series in seg.get("ReferencedSeriesSequence", []):
        items = [copy.deepcopy(item) for item in series.get("ReferencedInstanceSequence", [])]
        for item in items:
            if "ReferencedFrameNumber" in item:
                del item.ReferencedFrameNumber
        series.ReferencedInstanceSequence = items


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """A library's log warnings off for the block (errors still pass)."""
    log = logging.getLogger(logger_name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def type2c_present(ds: Any, laterality: bool = False) -> Any:
    """Type 2C attributes a validator requires present when their condition holds (dciodvfy -new):
    PatientOrientation (General Image) for an image without Image Orientation (Patient), and with
    `laterality` Laterality (General Series) where the IOD's condition asks for it (the Secondary
    Capture; not the SEG, where dciodvfy refuses it): present, empty where the source says nothing
    (a cine has no patient orientation to give)."""
    if "PatientOrientation" not in ds and "ImageOrientationPatient" not in ds:
        ds.PatientOrientation = ""
    if laterality and "Laterality" not in ds and "ImageLaterality" not in ds:
        ds.Laterality = ""
    return ds


IDENTITY_TAGS = {"StudyInstanceUID": "(0020,000D)", "SeriesInstanceUID": "(0020,000E)",
                 "SOPInstanceUID": "(0008,0018)", "SOPClassUID": "(0008,0016)"}


def check_identity(source: Any) -> None:
    """The UIDs a result must reference are there, or a ConfigError names the missing tag."""
    missing = [f"{k} {tag}" for k, tag in IDENTITY_TAGS.items() if not source.get(k)]
    if missing:
        raise ConfigError(f"the source DICOM has no {', '.join(missing)}: a SEG or overlay could not reference it",
                          hint="a valid DICOM image always has them: fix the file at its source (no result written)")


__all__ = ["Algorithm", "IDENTITY_TAGS", "check_identity", "frame_numbers_from_text", "runtime_version", "seg_for_frame",
           "type2c_present"]
