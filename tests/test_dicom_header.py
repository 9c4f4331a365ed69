"""The strict DICOM reader (issue 44, items 4-6): every declared size is checked against the bytes
present before anything is allocated, every physical value is validated once, and a damaged pixel
stream is a refusal naming the file (it was a NameError). The bombs run under an address-space
limit, and a property-based test draws header values: each ends in frames or an Llm4SegError,
never a traceback, and within a set memory and time."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llm4seg.errors import ConfigError, Llm4SegError
from tests.conftest import address_space_limit, installed_or_skip

pydicom = pytest.importorskip("pydicom")
MEMORY_MB = 600  # what a bomb may add to the test process's address space before it fails


@pytest.fixture(autouse=True, scope="module")
def _codecs():
    installed_or_skip(lambda: __import__("pylibjpeg"), "pydicom's codecs", "pip install 'llm4seg[dicom]'")


def cine(path, frames=4, rows=32, cols=40, syntax="native", **tags):
    """A small colour ultrasound cine: native, RLE, JPEG baseline (OpenCV's encoder, encapsulated)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless, UltrasoundMultiFrameImageStorage,
                             generate_uid)

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (frames, rows, cols, 3), dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = UltrasoundMultiFrameImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "US", generate_uid(), generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.FrameTime, ds.FrameIncrementPointer = rows, cols, frames, 40.0, 0x00181063
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()
    if syntax == "rle":
        ds.compress(RLELossless)
    elif syntax == "jpeg":
        jpegs = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in rgb]
        ds.file_meta.TransferSyntaxUID, ds.PhotometricInterpretation = JPEGBaseline8Bit, "YBR_FULL_422"
        ds.PixelData = encapsulate(jpegs)
        ds["PixelData"].is_undefined_length, ds["PixelData"].VR = True, "OB"
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def frames_of(path, limit=64):
    from llm4seg.dicom import DicomSource

    source = DicomSource(path)
    out = []
    while len(out) < limit:
        ok, frame = source.read()
        if not ok:
            break
        out.append(frame)
    return source, out


def refused(path, words):
    with address_space_limit(MEMORY_MB), pytest.raises(ConfigError, match=words) as info:
        frames_of(path)
    assert path.name in info.value.message and info.value.hint
    return info.value


@pytest.mark.parametrize("syntax", ["native", "rle", "jpeg"])
def test_the_good_cines_read(tmp_path, syntax):
    source, frames = frames_of(cine(tmp_path / "c.dcm", syntax=syntax))
    assert len(frames) == 4 and frames[0].shape == (32, 40, 3) and source.header.frames == 4


@pytest.mark.parametrize("syntax", ["native", "rle", "jpeg"])
@pytest.mark.parametrize("frames, words", [(20_000_000, r"NumberOfFrames \(0028,0008\) is 20000000, not in 1-1000000"),
                                           (900_000, r"900,000|need [0-9,]+ bytes of pixel data")])
def test_millions_of_frames_over_a_small_file_are_refused_before_any_allocation(tmp_path, syntax, frames, words):
    """A 100 KB instance declaring 20,000,000 frames held the listener's worker (756 MB, minutes):
    beyond an hour of video, or more frames than the bytes can hold, is refused from the header."""
    refused(cine(tmp_path / "bomb.dcm", syntax=syntax, NumberOfFrames=frames), words)


def test_twenty_million_frames_of_h264_are_refused(tmp_path):
    from tests.test_dicom import write_h264_dicom

    installed_or_skip(lambda: __import__("av"), "PyAV", "pip install 'llm4seg[video]'")
    path = write_h264_dicom(pydicom, tmp_path / "video.dcm")
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 900_000
    ds.save_as(path)
    refused(path, r"NumberOfFrames \(0028,0008\) 900,000 over")


def test_rows_and_columns_beyond_the_codestream_are_refused(tmp_path):
    """Rows/Columns 18000 over a 64 x 64 JPEG stream: the decoder allocated 18000 x 18000 first."""
    path = cine(tmp_path / "big.dcm", frames=1, rows=64, cols=64, syntax="jpeg", Rows=18000, Columns=18000)
    refused(path, r"say 18000 x 18000, the first frame's codestream says 64 x 64")
    rle = cine(tmp_path / "big-rle.dcm", frames=1, rows=64, cols=64, syntax="rle", Rows=18000, Columns=18000)
    refused(rle, r"cannot hold 18000 x 18000 pixels \(RLE expands at most 64-fold\)")


@pytest.mark.parametrize("tags, words", [
    ({"BitsAllocated": 1, "BitsStored": 1, "HighBit": 0}, r"BitsAllocated \(0028,0100\) is 1"),
    ({"PhotometricInterpretation": "YBR_FULL_422"}, r"need 10,240 bytes of pixel data, it holds 15,360"),
    ({"NumberOfFrames": 0}, r"NumberOfFrames \(0028,0008\) is 0"),
    ({"NumberOfFrames": -3}, r"NumberOfFrames \(0028,0008\) is -3"),
    ({"FrameTime": "NaN"}, r"FrameTime \(0018,1063\) is 'NaN'"),
    ({"FrameTime": "-40"}, r"FrameTime \(0018,1063\) is '-40'"),
    ({"FrameTime": "inf"}, r"FrameTime \(0018,1063\) is 'inf'"),
    ({"SamplesPerPixel": 1}, r"SamplesPerPixel \(0028,0002\) is 1 for RGB"),
    ({"HighBit": 3}, r"HighBit \(0028,0102\) is 3"),
])
def test_declared_values_that_do_not_describe_the_bytes_are_refused(tmp_path, tags, words):
    refused(cine(tmp_path / "bad.dcm", **tags), words)


def _region(ds_tags, box=(0, 0, 39, 31), deltas=(0.01, 0.01)):
    from pydicom.dataset import Dataset

    r = Dataset()
    r.RegionSpatialFormat, r.RegionDataType = 1, 1
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
    r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = 3
    r.PhysicalDeltaX, r.PhysicalDeltaY = deltas
    ds_tags["SequenceOfUltrasoundRegions"] = [r]
    return ds_tags


@pytest.mark.parametrize("tags, words", [
    ({"PixelSpacing": [0, 0]}, r"PixelSpacing gives a pixel size of 0.0 mm"),
    ({"PixelSpacing": [-1, 1]}, r"PixelSpacing gives a pixel size of -1.0 mm"),
    ({"PixelSpacing": ["NaN", 1]}, r"PixelSpacing is 'NaN', not a finite number"),
    ({"PixelSpacing": [1e308, 1]}, r"PixelSpacing gives a pixel size of 1e\+308 mm"),
    ({"PixelSpacing": [0.1]}, r"PixelSpacing holds 1 value"),
    (_region({}, deltas=(float("nan"), 0.01)), r"PhysicalDeltaX is nan"),
    (_region({}, deltas=(0.0, 0.01)), r"PhysicalDeltaX gives a pixel size of 0.0 mm"),
    (_region({}, box=(30, 0, 10, 31)), r"region 0 is inverted"),
])
def test_physical_values_are_validated_once_naming_the_tag(tmp_path, tags, words):
    """PixelSpacing 0\\0 gave 0 mm^2 and HD95 0 mm; -1\\1 gave -4096 mm^2; NaN deltas ended in a
    traceback after the SEG was written; an inverted region was dropped without a word."""
    refused(cine(tmp_path / "geometry.dcm", **tags), words)


def test_a_region_outside_the_image_is_left_out_and_said(tmp_path):
    source, _ = frames_of(cine(tmp_path / "g.dcm", **_region({}, box=(100, 100, 120, 120))))
    assert source.geometry.region is None and any("lies outside" in n for n in source.notes)


@pytest.mark.parametrize("syntax", ["rle", "jpeg"])
def test_a_damaged_pixel_stream_is_refused_not_a_name_error(tmp_path, syntax):
    """Issue 44, item 4: `source.py` caught ConfigError without importing it: every damaged stream
    ended in a NameError."""
    path = cine(tmp_path / "garbage.dcm", syntax=syntax)
    data = bytearray(path.read_bytes())
    if syntax == "rle":  # the third frame's RLE header points its first segment far beyond its data
        headers = [i for i in range(len(data) - 4) if data[i:i + 4] == b"\x03\x00\x00\x00" and
                   data[i + 4:i + 8] == b"\x40\x00\x00\x00"]  # 3 segments, the first at offset 64
        data[headers[2] + 4:headers[2] + 8] = (0x7FFFFFF0).to_bytes(4, "little")
    else:  # the third JPEG's tables and frame header overwritten
        starts = [i for i in range(len(data) - 1) if data[i:i + 3] == b"\xff\xd8\xff"]
        data[starts[2] + 2:starts[2] + 300] = bytes(298)
    path.write_bytes(bytes(data))
    with pytest.raises(Llm4SegError) as info:
        frames_of(path)
    assert "garbage.dcm" in info.value.message and not isinstance(info.value, NameError)


def test_a_segmented_palette_that_expands_beyond_its_entries_is_refused(tmp_path):
    """An 18 KB segmented palette table once expanded to 2.1 GB resident."""
    from pydicom.data import get_testdata_file

    original = get_testdata_file("OBXXXX1A.dcm")  # pydicom's palette ultrasound
    ds = pydicom.dcmread(original)
    words = np.array([0, 1, 0] + [1, 65535, 255] * 3000, "<u2")  # one entry, then 3000 linear runs of 65535
    for color in ("Red", "Green", "Blue"):
        setattr(ds, f"Segmented{color}PaletteColorLookupTableData", words.tobytes())
        if f"{color}PaletteColorLookupTableData" in ds:
            delattr(ds, f"{color}PaletteColorLookupTableData")
    ds.save_as(tmp_path / "palette.dcm")
    refused(tmp_path / "palette.dcm", r"segmented Red palette expands to more than its")


def test_the_segmented_length_counts_what_pydicom_expands():
    from pydicom.pixels.processing import _expand_segmented_lut

    from llm4seg.dicom.header import segmented_length

    words = [0, 3, 10, 20, 30, 1, 5, 80, 0, 2, 7, 9, 2, 2, 0, 0]  # discrete, linear, discrete, indirect
    assert segmented_length(words, 1000) == len(_expand_segmented_lut(tuple(words), "<H"))


HEADER_FIELDS = {
    "Rows": st.one_of(st.just(32), st.integers(0, 65535)),  # US: what the binary encoding can hold
    "Columns": st.one_of(st.just(40), st.integers(0, 65535), st.just(None)),
    "NumberOfFrames": st.one_of(st.integers(1, 4), st.integers(-2, 30_000_000)),
    "SamplesPerPixel": st.one_of(st.just(3), st.integers(0, 5)),
    "BitsAllocated": st.sampled_from([0, 1, 8, 8, 8, 12, 16, 32, 64]),
    "BitsStored": st.one_of(st.just(8), st.integers(0, 33)),
    "HighBit": st.one_of(st.just(7), st.integers(0, 33)),
    "PhotometricInterpretation": st.sampled_from(["RGB", "YBR_FULL_422", "MONOCHROME2", "MONOCHROME1", "HSV", "",
                                                 "PALETTE COLOR"]),
    "FrameTime": st.floats(allow_nan=True, allow_infinity=True),
    "PixelSpacing": st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=3),
}


@settings(max_examples=120, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(syntax=st.sampled_from(["native", "rle", "jpeg"]), changes=st.fixed_dictionaries(
    {}, optional=HEADER_FIELDS), region=st.none() | st.tuples(*[st.integers(0, 200)] * 4),
       deltas=st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=32)] * 2))
def test_drawn_headers_end_in_frames_or_a_clear_error(tmp_path_factory, syntax, changes, region, deltas):
    """Settings named: 120 drawn headers over native, RLE and JPEG cines, each read within 3 s and
    600 MB of address space; a result is frames of the declared size, else an Llm4SegError. (Text
    in numeric fields is left out: pydicom will not write it.)"""
    tags = {k: v for k, v in changes.items() if v is not None}
    if region is not None:
        _region(tags, box=region, deltas=tuple(float(d) for d in deltas))
    path = tmp_path_factory.mktemp("drawn") / "h.dcm"
    try:
        with pydicom.config.disable_value_validation():  # write what a damaged cart would (NaN, text in numbers)
            cine(path, syntax=syntax, **tags)
    except Exception:  # noqa: BLE001  (pydicom itself will not encode or write this value: nothing to read)
        event("pydicom would not write it")
        return
    with address_space_limit(MEMORY_MB):
        try:
            source, frames = frames_of(path, limit=8)
        except Llm4SegError as exc:
            assert exc.message and exc.hint
            event("refused")
            return
    event("read")
    assert frames and all(f.shape == (source.rows, source.cols, 3) and f.dtype == np.uint8 for f in frames)
    mm = source.geometry.mm_per_px
    assert mm is None or all(math.isfinite(v) and v > 0 for v in mm)
    assert source.times_s is None or all(math.isfinite(t) for t in source.times_s[:8])


def test_the_address_space_limit_stops_an_allocation():
    """The limit the bomb tests run under can fail an allocation (else they would prove nothing)."""
    with address_space_limit(MEMORY_MB), pytest.raises(MemoryError):
        np.ones(int(2 * MEMORY_MB * 2**20), np.uint8)
    assert np.ones(int(2 * MEMORY_MB * 2**20), np.uint8).size  # and it is lifted after
