"""Clips for the video tests: H.264 files written with PyAV, with known timestamps."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from llm4seg.data.synthetic import synthetic_dataset
from tests.conftest import installed_or_skip


def needs_pyav() -> None:
    installed_or_skip(lambda: __import__("av"), "PyAV", "pip install 'llm4seg[video]'")


def write_h264_clip(path, n=12, size_wh=(120, 96), rate=Fraction(30000, 1001), pts_s=None):
    """An H.264 mp4 of synthetic frames at `rate` (timestamps `pts_s`, seconds, else regular);
    returns the BGR frames written."""
    import av

    images, _, _ = synthetic_dataset(n, 96, seed=4)
    frames = [cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), size_wh) for img in images]
    tick = Fraction(1, 90000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = *size_wh, "yuv420p"
        stream.time_base = stream.codec_context.time_base = tick
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="bgr24")
            t = pts_s[i] if pts_s is not None else i / rate
            video_frame.pts, video_frame.time_base = int(round(t / tick)), tick
            for packet in stream.encode(video_frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return frames


def decoded(path):
    """(codec name, container format, average rate, [frame times s], [BGR frames]) of a video file."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return (stream.codec_context.name, container.format.name, stream.average_rate,
                [float(f.time) for f in frames], [f.to_ndarray(format="bgr24") for f in frames])


@pytest.fixture(scope="module")
def h264_clip(tmp_path_factory):
    needs_pyav()
    path = tmp_path_factory.mktemp("h264") / "clip.mp4"
    # Irregular timestamps (a variable-rate recording): the output must keep them, not re-time them.
    pts_s = [0.0, 0.033, 0.07, 0.1, 0.2, 0.233, 0.3, 0.31, 0.4, 0.45, 0.5, 0.6]
    frames = write_h264_clip(path, pts_s=pts_s)
    return path, pts_s, frames


def box_masks(frames):
    masks = []
    for f in frames:
        m = np.zeros(f.shape[:2], np.uint8)
        m[8:40, 10:50] = 1
        masks.append(m)
    return masks


def needs_triton() -> None:
    def probe():
        from llm4seg.runtime.doors.triton.server import find_tritonserver

        __import__("tritonclient.grpc")
        __import__("tritonclient.http")
        find_tritonserver()
    installed_or_skip(probe, "Triton Inference Server", "pip install 'llm4seg[triton]' and pip install --no-deps nvidia-pytriton")


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory, exported):
    """A real tritonserver on the repository written from the test export (segment + model_pt2)."""
    needs_triton()
    from llm4seg.runtime.doors.triton.repository import write_repository
    from llm4seg.runtime.doors.triton.server import TritonServer, free_port

    repo = write_repository(exported[0], tmp_path_factory.mktemp("triton") / "repo")
    server = TritonServer(repo.folder, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          log_path=repo.folder.parent / "tritonserver.log")
    with server:
        yield server


def stand_in_entry(image_size: int = 64, threshold: float = 0.5, low_confidence: float = 0.1) -> dict:
    """A valid manifest entry for a float graph that no file backs (for StandInBackend)."""
    from llm4seg.runtime.core.manifest_build import build_manifest

    config = {"image_size": image_size, "in_channels": 3, "num_classes": 1, "mean": [0.485, 0.456, 0.406],
              "std": [0.229, 0.224, 0.225], "threshold": threshold, "name": "stand-in"}
    entry = build_manifest(artifact="stand-in.onnx", precision="fp32", model_config=config, checkpoint_sha256="0" * 64,
                           opset=17, batch_range=(1, 1, 8), folds={}, extra={"sha256": "0" * 64})
    entry["quality"] = {"low_confidence": low_confidence, "percentile": 10, "n": 1, "source": "a stand-in"}
    return entry


def stand_in(prob: float = 0.9, **entry):
    """A Segmenter over a stand-in model whose probability is `prob` everywhere (a float, or a
    function of the normalised input batch (N, 3, S, S) returning (N, 1, S, S)): for the logic
    around a model (regions, flags, pipelines, DICOM plumbing), never for a model's own numbers."""
    from llm4seg.runtime import Backend, Segmenter

    class _StandIn(Backend):
        name = "stand-in"

        def __init__(self) -> None:
            super().__init__("stand-in.onnx", stand_in_entry(**entry))

        def _verify(self) -> None:
            pass

        def _load(self) -> None:
            pass

        def _infer(self, image):
            return prob(image) if callable(prob) else np.full((len(image), 1, *image.shape[2:]), prob, np.float32)

    return Segmenter(_StandIn())


def AllForeground():  # noqa: N802  (kept as the tests name it)
    """A stand-in model for the region logic only: probability 0.9 everywhere."""
    return stand_in(0.9)


def complete_header(ds, secondary_capture: bool = False):
    """The patient, study, series, equipment and image attributes of type 1 and 2 (and the 2C ones
    dciodvfy asks for) that the tests' DICOM inputs need to be valid objects (`dciodvfy -new`)."""
    defaults = {"PatientName": "Test^Input", "PatientID": "llm4seg-test", "PatientBirthDate": "", "PatientSex": "",
                "StudyDate": "20261207", "StudyTime": "101500", "ReferringPhysicianName": "", "StudyID": "1",
                "AccessionNumber": "", "SeriesNumber": 1, "InstanceNumber": 1, "Laterality": "",
                "PatientOrientation": "", "Manufacturer": "llm4seg tests"}
    if secondary_capture:
        defaults["ConversionType"] = "WSD"
    else:
        defaults["ImageType"] = ["ORIGINAL", "PRIMARY"]
    for keyword, value in defaults.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    return ds


def assert_valid_dicom(path):
    """`dciodvfy -new` (dicom3tools, the validator PACS vendors use) finds no Error in the object."""
    import shutil
    import subprocess

    installed_or_skip(lambda: shutil.which("dciodvfy") or (_ for _ in ()).throw(FileNotFoundError("dciodvfy")),
                      "dciodvfy", "apt-get install dicom3tools (make setup installs it as root)")
    result = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True, timeout=120)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert not errors, f"{path}: " + "\n".join(errors)


def write_dicom(pydicom, rgb, path, rle=False, spacing_mm=0.1, **tags):
    """A single-frame RGB Secondary Capture of `rgb` at `spacing_mm` (RLE when asked) at `path`;
    `tags` (keyword=value) set or replace attributes (a series' UIDs, InstanceNumber, ContentTime)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "US", "Test^BUSI", "busi-test"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelSpacing = [spacing_mm, spacing_mm]
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    complete_header(ds, secondary_capture=True)
    if rle:
        ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_us_cine(path, rgb, patient_id, regions=(), complete=True, **tags):
    """An uncompressed multi-frame RGB ultrasound of `rgb` (N, H, W, 3) uint8 at 25 frames/s at `path`,
    with its `regions` (SequenceOfUltrasoundRegions items); `complete` adds the header attributes a
    valid object needs (`complete_header`); `tags` set or replace attributes."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    n, rows, cols = rgb.shape[:3]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UltrasoundMultiFrameImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "US"
    ds.PatientID = patient_id
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.FrameTime = rows, cols, n, 40.0
    ds.FrameIncrementPointer = 0x00181063
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if regions:
        ds.SequenceOfUltrasoundRegions = list(regions)
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    if complete:
        complete_header(ds)
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).pixel_array.shape == (n, rows, cols, 3)
    return path
