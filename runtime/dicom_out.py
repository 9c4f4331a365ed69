"""DICOM results: a Segmentation (SEG) per chosen frame of a DICOM source, and the whole loop's
overlay as a derived Multi-frame True Color Secondary Capture (`pip install 'llm4seg[dicom]'`).

Why one SEG per frame: highdicom (and the SEG IOD's plane positions) need a Frame of Reference to
map a multi-frame segmentation onto a multi-frame source; ultrasound and endoscopy cines have none
(highdicom#284 refuses them). So each SEG is built by highdicom against a single-frame view of the
source's header, and its references are then pointed back at the real instance: the source's SOP
class, SOP instance and `ReferencedFrameNumber` (the frame, 1-based), in the Referenced Series
Sequence and in every Source Image Sequence. The algorithm is named in the SEG (name, version and
the manifest entry's `entry_sha256` as a parameter), and each SEG says which frame it holds.

The overlay is built here with pydicom (highdicom's SCImage takes one frame): frames are RLE
encoded one at a time as they arrive, so a long cine is never held raw.

Nothing is half written: `write_datasets` writes every file to a temporary name first and renames
them only when all are written; on any failure none of them stays.
"""

from __future__ import annotations

import copy
import datetime
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.errors import ConfigError

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"  # single-frame Ultrasound Image Storage: highdicom's view
MULTIFRAME_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
SEG_SERIES_NUMBER, OVERLAY_SERIES_NUMBER = 9701, 9702


@dataclass(frozen=True)
class Algorithm:
    """What made the masks, as the SEG names it."""

    name: str  # e.g. "llm4seg cmunext_llm"
    version: str  # llm4seg's version
    manifest_sha256: str  # the manifest entry's entry_sha256 (the exported model's seal)
    segment_label: str = "lesion"

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "Algorithm":
        """The algorithm of an exported model's manifest entry (name and seal)."""
        model = (manifest.get("model") or {}).get("name", "model")
        return cls(f"llm4seg {model}", runtime_version(), str(manifest.get("entry_sha256", "unsealed")))


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

    return require("highdicom", "writing DICOM SEG (pip install 'llm4seg[dicom]')")


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
    """Rewrite every reference to the view into one to the source instance (and frame); returns
    how many references were rewritten."""
    count = 0
    for element in item:
        if element.VR != "SQ":
            continue
        for child in element.value:
            if child.get("ReferencedSOPInstanceUID") == source.SOPInstanceUID:
                child.ReferencedSOPClassUID = source.SOPClassUID
                if frame_number is not None:
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

    _check_identity(source)
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
    with warnings.catch_warnings():  # highdicom's remarks on the source's own values (a one-part name) are not ours
        warnings.simplefilter("ignore", UserWarning)
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
    return seg


IDENTITY_TAGS = {"StudyInstanceUID": "(0020,000D)", "SeriesInstanceUID": "(0020,000E)",
                 "SOPInstanceUID": "(0008,0018)", "SOPClassUID": "(0008,0016)"}


def _check_identity(source: Any) -> None:
    """The UIDs a result must reference are there, or a ConfigError names the missing tag."""
    missing = [f"{k} {tag}" for k, tag in IDENTITY_TAGS.items() if not source.get(k)]
    if missing:
        raise ConfigError(f"the source DICOM has no {', '.join(missing)}: a SEG or overlay could not reference it",
                          hint="a valid DICOM image always has them: fix the file at its source (no result written)")


class OverlayCapture:
    """The overlaid frames of a run, RLE-encoded as they come, made into one derived Multi-frame
    True Color Secondary Capture referencing the source instances (see the module).

    Args:
        sources: the headers of the instances the frames come from (one cine, or a series' images).
    """

    def __init__(self, sources: list[Any], frame_time_ms: float | None) -> None:
        self.sources, self.frame_time_ms = list(sources), frame_time_ms
        self.fragments: list[bytes] = []
        self.shape_hw: tuple[int, int] | None = None

    def add(self, frame_bgr: np.ndarray) -> None:
        """Encode one overlaid BGR frame (all frames one size)."""
        from pydicom.pixels import get_encoder
        from pydicom.uid import RLELossless

        rgb = np.ascontiguousarray(frame_bgr[..., ::-1])
        if self.shape_hw is None:
            self.shape_hw = rgb.shape[:2]
        elif rgb.shape[:2] != self.shape_hw:
            raise ConfigError(f"overlay frame {len(self.fragments) + 1} is {rgb.shape[1]}x{rgb.shape[0]}, the "
                              f"first was {self.shape_hw[1]}x{self.shape_hw[0]}", hint="frames of one loop share a size")
        self.fragments.append(get_encoder(RLELossless).encode(
            rgb, rows=rgb.shape[0], columns=rgb.shape[1], samples_per_pixel=3, bits_allocated=8, bits_stored=8,
            pixel_representation=0, photometric_interpretation="RGB", planar_configuration=0, number_of_frames=1))

    def dataset(self, algorithm: Algorithm, series_uid: str) -> Any:
        """The Secondary Capture holding every frame added (RLE Lossless)."""
        if not self.fragments:
            raise ConfigError("no overlay frame was made", hint="the run wrote no frame: see its events")
        from pydicom.encaps import encapsulate
        from pydicom.uid import RLELossless, generate_uid

        for source in self.sources:
            _check_identity(source)
        ds = _derived_header(self.sources, MULTIFRAME_TRUE_COLOR_SC, series_uid, OVERLAY_SERIES_NUMBER, algorithm)
        ds.file_meta.TransferSyntaxUID = RLELossless
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.Rows, ds.Columns = self.shape_hw
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.NumberOfFrames = len(self.fragments)
        if self.frame_time_ms:
            ds.FrameTime = f"{self.frame_time_ms:.4f}"[:16]
            ds.FrameIncrementPointer = 0x00181063  # Frame Time
        else:
            ds.FrameIncrementPointer = 0x00280009  # Number of Frames (no timing known)
        ds.BurnedInAnnotation = "YES"  # the contours are burnt into the pixels
        ds.PixelData = encapsulate(self.fragments)
        ds["PixelData"].VR = "OB"
        return ds


def _derived_header(sources: list[Any], sop_class: str, series_uid: str, series_number: int,
                    algorithm: Algorithm) -> Any:
    """Patient and study of the first source, a new series, and a Source Image Sequence pointing at
    every source instance."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    source = sources[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription"):
        if keyword in source:
            ds[keyword] = copy.deepcopy(source[keyword])
    ds.Modality = source.get("Modality", "OT")
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, series_number, 1
    ds.SeriesDescription = f"{algorithm.name} overlay"[:64]
    ds.ConversionType = "WSD"  # made on a workstation
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = (f"masks by {algorithm.name} {algorithm.version} (manifest entry "
                                f"{algorithm.manifest_sha256[:16]}) drawn on the source frames")[:1024]
    ds.Manufacturer, ds.SoftwareVersions = "llm4seg", algorithm.version
    refs = []
    for instance in sources:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = instance.SOPClassUID, instance.SOPInstanceUID
        refs.append(ref)
    ds.SourceImageSequence = refs
    ds.SpecificCharacterSet = source.get("SpecificCharacterSet", "ISO_IR 100")
    ds.InstanceCreationDate = ds.ContentDate = datetime.date.today().strftime("%Y%m%d")
    ds.file_meta.ImplementationClassUID = generate_uid(prefix="1.2.826.0.1.3680043.8.498.")
    return ds


def write_datasets(datasets: dict[str, Any], out_dir: Path | str) -> list[Path]:
    """Write each dataset as `out_dir/<name>` (DICOM Part 10), all or none.

    Returns:
        the paths written.

    Raises:
        ConfigError naming the file when one cannot be written (none of them is left behind).
    """
    out_dir = Path(out_dir)
    taken = [name for name in datasets if (out_dir / name).exists()]
    if taken:
        raise ConfigError(f"{out_dir} already holds {', '.join(taken[:5])}", hint="pass an empty --dicom-out folder "
                          "(results of an earlier run are never overwritten)")
    out_dir.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[Path, Path]] = []
    renamed: list[Path] = []
    try:
        for name, ds in datasets.items():
            path = out_dir / name
            temps.append((path.with_name(f".{name}.tmp{os.getpid()}"), path))
            ds.save_as(temps[-1][0], enforce_file_format=True)
        for tmp, path in temps:
            os.replace(tmp, path)
            renamed.append(path)
    except OSError as exc:
        for path in renamed:  # all or none
            path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write DICOM results to {out_dir}: {exc}",
                          hint="pass a writable --dicom-out folder with room for the files") from None
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
    return renamed


class DicomResults:
    """A pipeline sink (chain it before the video sink with `tee`) that keeps the masks of the
    chosen frames and, when asked, the overlaid frames; `datasets()` makes the SEGs and overlay.

    Args:
        source: the run's DicomSource (its header is what the results reference).
        frame_numbers: 1-based frames that get a SEG.
        overlay_sc: also make the whole loop's overlay as a Secondary Capture.
    """

    def __init__(self, source: Any, frame_numbers: list[int], algorithm: Algorithm, overlay_sc: bool = False,
                 mode: str = "contour") -> None:
        self.source, self.algorithm, self.mode = source, algorithm, mode
        self.wanted = set(frame_numbers)
        self.masks: dict[int, np.ndarray] = {}
        times = getattr(source, "times_s", None)
        frame_time_ms = 1000.0 * (times[1] - times[0]) if times and len(times) > 1 else None
        self.capture = OverlayCapture(source.instances, frame_time_ms) if overlay_sc else None

    def __call__(self, frame: Any) -> None:
        number = frame.index + 1
        if number in self.wanted and frame.mask is not None:
            self.masks[number] = np.array(frame.mask, copy=True)
        if self.capture is not None:
            from llm4seg.runtime.segmenter import overlay

            unsure = "low_confidence" in ((getattr(frame, "quality", None) or {}).get("flags", ()))
            self.capture.add(overlay(frame.image, frame.mask, self.mode, unsure=unsure))

    def tee(self, sink: Any) -> Any:
        """A sink that feeds this and then `sink` (its close and attributes kept)."""
        return _Tee(self, sink)

    def datasets(self) -> dict[str, Any]:
        """{file name: dataset}: one SEG per chosen frame, and overlay.dcm when asked.

        Raises:
            ConfigError when a chosen frame never came (no SEG is then made at all).
        """
        from pydicom.uid import generate_uid

        missing = sorted(self.wanted - set(self.masks))
        if missing:
            raise ConfigError(f"frames {missing[:10]} of {self.source.path.name} were never segmented (the run "
                              f"ended after {len(self.masks)} of the chosen frames); no SEG was written",
                              hint="see the run's events (a decode error or an interrupt), or choose other frames")
        series = generate_uid()
        out = {f"seg_frame{n:04d}.dcm": seg_for_frame(*self.source.instance_of(n), self.masks[n], self.algorithm,
                                                      series, i + 1) for i, n in enumerate(sorted(self.masks))}
        if self.capture is not None:
            out["overlay.dcm"] = self.capture.dataset(self.algorithm, generate_uid())
        return out


class _Tee:
    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second

    def __call__(self, frame: Any) -> None:
        self.first(frame)
        self.second(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.second, name)


__all__ = ["Algorithm", "DicomResults", "OverlayCapture", "frame_numbers_from_text", "seg_for_frame",
           "write_datasets"]
