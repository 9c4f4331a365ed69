"""The whole loop's overlay as one derived Multi-frame True Color Secondary Capture, built with
pydicom (highdicom's SCImage takes one frame): frames are RLE encoded one at a time as they
arrive, so a long cine is never held raw."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.runtime.doors.dicom.seg import Algorithm, check_identity, type2c_present

MULTIFRAME_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
OVERLAY_SERIES_NUMBER = 9702


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
            check_identity(source)
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
        return type2c_present(ds, laterality=True)


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


__all__ = ["MULTIFRAME_TRUE_COLOR_SC", "OverlayCapture"]
