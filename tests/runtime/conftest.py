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
        from llm4seg.runtime.triton.server import find_tritonserver

        __import__("tritonclient.grpc")
        __import__("tritonclient.http")
        find_tritonserver()
    installed_or_skip(probe, "Triton Inference Server", "pip install 'llm4seg[triton]' and pip install --no-deps nvidia-pytriton")


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory, exported):
    """A real tritonserver on the repository written from the test export (segment + model_pt2)."""
    needs_triton()
    from llm4seg.runtime.triton.repository import write_repository
    from llm4seg.runtime.triton.server import TritonServer, free_port

    repo = write_repository(exported[0], tmp_path_factory.mktemp("triton") / "repo")
    server = TritonServer(repo.folder, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          log_path=repo.folder.parent / "tritonserver.log")
    with server:
        yield server


class AllForeground:
    """A stand-in model for the region logic only: probability 0.9 everywhere."""

    threshold, low_confidence, low_confidence_source = 0.5, 0.1, "test"

    def segment(self, frames, binary=True):
        return [np.full(f.shape[:2], 0.9, np.float32) for f in frames]


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
    if rle:
        ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)
    return path
