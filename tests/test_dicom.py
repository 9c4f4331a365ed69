"""DICOM sources (issue 35, first part): pydicom's own ultrasound cine with its regions and frame
time, DICOM files written here from BUSI images (uncompressed and RLE) segmenting exactly as their
PNGs, and bad files refused with the file, the tag and the fix."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from llm4seg.errors import ConfigError
from llm4seg.runtime import Segmenter, VideoPipeline
from tests.conftest import DATASETS, installed_or_skip
from tests.runtime.conftest import AllForeground, assert_valid_dicom, write_dicom


@pytest.fixture(autouse=True)
def pydicom():
    installed_or_skip(lambda: __import__("pydicom"), "pydicom", "pip install 'llm4seg[dicom]' (make setup installs it)")
    import pydicom

    return pydicom


def test_the_packaged_ultrasound_cine_plays_with_its_timing_and_tissue_region(exported):
    from pydicom.data import get_testdata_file

    from llm4seg.dicom import DicomSource

    path = get_testdata_file("examples_ybr_color.dcm")  # 30 frames, YBR_FULL_422 JPEG, regions
    source = DicomSource(path)
    assert (source.frame_count, source.rows, source.cols) == (30, 240, 320)
    assert source.times_s[1] == pytest.approx(0.033333) and source.conversion.startswith("YBR_FULL_422 to BGR (OpenCV")
    assert source.geometry.mm_per_px == pytest.approx((0.5105, 0.5105), abs=1e-4)
    assert any("exceed the 320x240 image" in n for n in source.notes)  # its regions are the 640x480 original's
    seen = []
    with Segmenter(exported[0] / "model.onnx") as seg:
        report = VideoPipeline(seg, path, sink=seen.append).run().summary()
    assert report["frames_out"] == 30 and [f.pts_s for f in seen[:2]] == pytest.approx([0.0, 0.033333])
    assert report["physical"]["source"].startswith("SequenceOfUltrasoundRegions")
    # The crop itself, with a model that calls every pixel foreground (the test model's masks on
    # ultrasound may well be empty, and an empty mask is inside any region): the masks must be
    # exactly the tissue region, and their area its pixels at 0.5105 mm.
    seen = []
    report = VideoPipeline(AllForeground(), path, sink=seen.append).run().summary()
    region = source.geometry.region
    assert region.sum() == 236 * 209 and all(np.array_equal(f.mask, region) for f in seen)
    assert seen[0].result.area_mm2 == pytest.approx(region.sum() * source.geometry.mm_per_px[0] * source.geometry.mm_per_px[1])
    assert report["physical"]["area_mm2"]["max"] == pytest.approx(seen[0].result.area_mm2)


def test_dicom_written_from_busi_segments_exactly_as_the_png(pydicom, exported, tmp_path):
    from llm4seg.dicom import DicomSource

    pngs = sorted((DATASETS / "busi" / "images").glob("*.png"))[:3]
    if not pngs:
        from llm4seg.data.synthetic import synthetic_dataset

        images = list(synthetic_dataset(3, 96, seed=2)[0])
    else:
        images = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in pngs]
    with Segmenter(exported[0] / "model.onnx") as seg:
        for k, rgb in enumerate(images):
            # Probabilities, not masks: equal maps say the same pixels reached the model (masks of a
            # small test model could agree by both being empty).
            expected = seg.segment_one(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), binary=False)
            for rle in (False, True):
                path = write_dicom(pydicom, rgb, tmp_path / f"{k}{'-rle' if rle else ''}.dcm", rle=rle)
                assert_valid_dicom(path)  # a BUSI image as a valid Secondary Capture (dciodvfy -new)
                source = DicomSource(path)
                ok, frame = source.read()
                assert ok and source.read() == (False, None)
                np.testing.assert_array_equal(frame, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                np.testing.assert_array_equal(seg.segment_one(frame, binary=False), expected)  # Dice as the PNG's
                assert source.geometry.mm_per_px == (0.1, 0.1) and source.geometry.source.startswith("PixelSpacing")


def test_bad_dicom_files_are_refused_naming_the_file_and_the_tag(pydicom, tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

    from llm4seg.dicom import DicomSource

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = BasicTextSRStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report = Dataset()
    report.file_meta, report.SOPClassUID, report.Modality = meta, BasicTextSRStorage, "SR"
    report.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with pytest.raises(ConfigError, match=r"report.dcm: holds no pixel data \(tag \(7FE0,0010\) absent; SOP class: Basic Text SR"):
        DicomSource(tmp_path / "report.dcm")
    rgb = np.zeros((32, 40, 3), np.uint8)
    good = write_dicom(pydicom, rgb, tmp_path / "good.dcm")
    cases = {"hsv.dcm": ("PhotometricInterpretation", "HSV", r"photometric interpretation 'HSV' \(0028,0004\)"),
             "private.dcm": (None, "1.2.826.0.1.3680043.99.1", r"transfer syntax 1.2.826.0.1.3680043.99.1 \(0002,0010\) has no decoder")}
    for name, (tag, value, words) in cases.items():
        ds = pydicom.dcmread(good)
        if tag:
            setattr(ds, tag, value)
        else:
            ds.file_meta.TransferSyntaxUID = value
        ds.save_as(tmp_path / name)
        with pytest.raises(ConfigError, match=words) as info:
            DicomSource(tmp_path / name)
        assert name in info.value.message and info.value.hint
    data = good.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ConfigError, match="cut.dcm: Rows x Columns x Frames .* the file is truncated|truncated"):
        DicomSource(tmp_path / "cut.dcm")
    rle = write_dicom(pydicom, np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8),
                      tmp_path / "rle.dcm", rle=True)
    (tmp_path / "cut-rle.dcm").write_bytes(rle.read_bytes()[:-3000])  # inside its compressed fragments
    with pytest.raises(ConfigError, match=r"cut-rle.dcm: ends before its data does \(truncated"):
        DicomSource(tmp_path / "cut-rle.dcm")
    huge = pydicom.dcmread(rle)
    huge.Rows = huge.Columns = 65535
    huge.save_as(tmp_path / "huge.dcm")
    with pytest.raises(ConfigError, match=r"huge.dcm: one frame of Rows x Columns 65535 x 65535 .* 12.0 GiB"):
        DicomSource(tmp_path / "huge.dcm")


def write_h264_dicom(pydicom, path, frames=None):
    """A Video Endoscopic Image of H.264 (MPEG-4 AVC High Profile) over two fragments; returns its path."""
    import av
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG4HP41, VideoEndoscopicImageStorage, generate_uid

    raw = path.with_suffix(".h264")
    with av.open(str(raw), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in frames if frames is not None else h264_frames():
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = raw.read_bytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = VideoEndoscopicImageStorage, generate_uid()
    meta.TransferSyntaxUID = MPEG4HP41
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.NumberOfFrames, ds.FrameTime = "ES", 48, 64, 8, 40.0
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 3, "YBR_PARTIAL_420", 8, 8, 7
    ds.PixelRepresentation, ds.PlanarConfiguration = 0, 0
    ds.PixelData = encapsulate([data[: len(data) // 2], data[len(data) // 2:]])  # split over two fragments
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


def h264_frames():
    rng = np.random.default_rng(0)
    return [np.clip(np.full((48, 64, 3), 40 + 15 * i, np.float32) + rng.normal(0, 3, (48, 64, 3)), 0, 255)
            .astype(np.uint8) for i in range(8)]


def test_h264_inside_dicom_is_taken_out_and_decoded_with_pyav(pydicom, tmp_path):
    """Encapsulated video (MPEG-4 AVC/H.264 High Profile): the fragments are one elementary stream,
    decoded by FFmpeg; frame times come from the DICOM's Frame Time."""
    installed_or_skip(lambda: __import__("av"), "PyAV", "pip install 'llm4seg[video]'")
    from llm4seg.dicom import DicomSource

    frames = h264_frames()
    source = DicomSource(write_h264_dicom(pydicom, tmp_path / "endo.dcm", frames))
    got = []
    while True:
        ok, frame = source.read()
        if not ok:
            break
        got.append((frame, source.last_pts_s))
    assert len(got) == 8 and source.conversion.startswith("encapsulated h264")
    assert [t for _, t in got[:2]] == pytest.approx([0.0, 0.04])
    for (frame, _), original in zip(got, frames):  # lossy: close to what was encoded
        assert np.abs(frame.astype(int) - original.astype(int)).mean() < 6


def _frames(name):
    from pydicom.data import get_testdata_file

    from llm4seg.dicom import DicomSource

    source = DicomSource(get_testdata_file(name))
    out = []
    while True:
        ok, frame = source.read()
        if not ok:
            return source, out
        out.append(frame)


def test_conversions_against_pydicoms_own_files(pydicom, tmp_path):
    """Transfer syntaxes and photometric interpretations through pydicom's decoders: the same image
    stored several ways gives the same BGR frame; grey, palette and >8-bit frames as stated."""
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_color_lut, convert_color_space

    for name in ("examples_rgb_color.dcm", "examples_jpeg2k.dcm"):  # uncompressed RGB; JPEG 2000 lossless YBR_RCT
        rgb = pydicom.dcmread(get_testdata_file(name)).pixel_array  # pydicom's own decoding, to RGB
        _, frames = _frames(name)
        np.testing.assert_array_equal(frames[0], rgb[..., ::-1])
    _, little = _frames("SC_rgb_small_odd.dcm")
    _, big = _frames("SC_rgb_small_odd_big_endian.dcm")  # explicit VR big endian
    np.testing.assert_array_equal(little[0], big[0])
    ybr = pydicom.dcmread(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    source, frames = _frames("SC_ybr_full_422_uncompressed.dcm")
    expected = ybr.pixel_array  # pydicom's own 4:2:2 unpacking and YBR -> RGB
    assert source.conversion.startswith("YBR_FULL_422 to BGR (OpenCV")
    assert np.abs(frames[0].astype(int) - expected[..., ::-1]).max() <= 1
    red = np.array([0, 0, 255])  # the SC_rgb test pattern starts with a red band (BGR)
    assert np.abs(frames[0][0, 0].astype(int) - red).max() <= 2
    raw = convert_color_space(ybr.pixel_array, "RGB", "YBR_FULL")  # had the conversion been skipped
    assert not np.array_equal(frames[0], raw[..., ::-1])
    palette = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    source, frames = _frames("examples_palette.dcm")
    lut = apply_color_lut(palette.pixel_array, palette)
    lut8 = (lut.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8) if lut.dtype != np.uint8 else lut
    np.testing.assert_array_equal(frames[0], lut8[..., ::-1])
    assert source.conversion.startswith("PALETTE COLOR through its lookup table")
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    source, grey = _frames("MR_small.dcm")
    scaled = np.clip(mr.pixel_array.astype(np.float64) / (2 ** int(mr.BitsStored) - 1) * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(grey[0], np.repeat(scaled[..., None], 3, axis=2))
    assert "16-bit values scaled to 0-255" in source.conversion
    _, grey_be = _frames("MR_small_bigendian.dcm")
    np.testing.assert_array_equal(grey[0], grey_be[0])
    mr.PhotometricInterpretation = "MONOCHROME1"
    mr.save_as(tmp_path / "mono1.dcm")
    from llm4seg.dicom import DicomSource

    ok, inverted = DicomSource(tmp_path / "mono1.dcm").read()
    assert ok and np.array_equal(inverted, 255 - grey[0])


def test_ybr_by_opencv_stays_within_a_level_of_pydicom_and_is_checked_per_file(pydicom, monkeypatch):
    """The JPEG cine's YBR frames converted by OpenCV: every frame within 1 level of pydicom's
    conversion and some differing from the unconverted values; a decoder that returns RGB itself
    (as some plugins do) fails the first-frame check and keeps pydicom's conversion, exactly."""
    from pydicom.data import get_testdata_file
    import pydicom.pixels as pixels

    name = "color3d_jpeg_baseline.dcm"
    if get_testdata_file(name) is None:
        pytest.skip("pydicom-data is not installed: pip install pydicom-data (in the dev extra)")
    source, frames = _frames(name)
    reference = [rgb[..., ::-1].astype(int) for rgb in pixels.iter_pixels(get_testdata_file(name), as_rgb=True)]
    assert "OpenCV" in source.conversion and len(frames) == len(reference) == 120
    assert max(np.abs(f.astype(int) - r).max() for f, r in zip(frames, reference)) <= 1
    raw = next(pixels.iter_pixels(get_testdata_file(name), as_rgb=False))
    assert np.abs(frames[0].astype(int) - raw[..., ::-1]).max() > 20  # the conversion did something
    full, full_frames = _frames("SC_ybr_full_uncompressed.dcm")  # YBR_FULL, uncompressed
    full_rgb = pydicom.dcmread(get_testdata_file("SC_ybr_full_uncompressed.dcm")).pixel_array
    assert full.conversion.startswith("YBR_FULL to BGR (OpenCV")
    assert np.abs(full_frames[0].astype(int) - full_rgb[..., ::-1]).max() <= 1

    real = pixels.iter_pixels

    def converting_plugin(path, *args, as_rgb=True, **kwargs):  # returns RGB whatever was asked
        return real(path, *args, as_rgb=True, **kwargs)

    monkeypatch.setattr(pixels, "iter_pixels", converting_plugin)
    source, frames = _frames(name)
    assert "OpenCV" not in source.conversion and source.conversion.startswith("YBR_FULL_422 to RGB (pydicom)")
    assert all(np.array_equal(f, r) for f, r in zip(frames, reference))


def test_a_codec_that_is_not_installed_is_named(pydicom):
    """pydicom without the pylibjpeg codecs (hidden in a child interpreter): a JPEG-LS file is
    refused naming the syntax, the packages that would decode it and the extra that installs them."""
    import subprocess
    import sys

    from pydicom.data import get_testdata_file

    script = ("import sys\n"
              "for name in ('pylibjpeg', 'libjpeg', 'openjpeg', 'rle', 'gdcm', 'jpeg_ls'):\n"
              "    sys.modules[name] = None  # as if not installed\n"
              "from llm4seg.dicom import DicomSource\n"
              "from llm4seg.errors import ConfigError\n"
              "try:\n"
              f"    DicomSource({get_testdata_file('MR_small_jpeg_ls_lossless.dcm')!r})\n"
              "except ConfigError as exc:\n"
              "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "MR_small_jpeg_ls_lossless.dcm: transfer syntax JPEG-LS Lossless Image Compression needs a codec that " \
           "is not installed" in out.stdout
    assert "pylibjpeg-libjpeg" in out.stdout and "pip install 'llm4seg[dicom]'" in out.stdout


def test_pydicom_data_ultrasound_stored_every_way_gives_the_same_frames(pydicom):
    """pydicom-data's ultrasound files: one palette image stored little endian, RLE, big endian and
    as two-frame files; an RGB image uncompressed and as lossless JPEG 2000; a 16-bit segmented
    palette both endians. Each set decodes to identical BGR frames (found: pydicom 3.0.2 reads a
    big-endian palette table in the wrong byte order, which made OBXXXX1A_expb nearly black)."""
    from pydicom.data import get_testdata_file

    def probe():
        if get_testdata_file("OBXXXX1A_expb.dcm") is None:
            raise FileNotFoundError("OBXXXX1A_expb.dcm is not there")

    installed_or_skip(probe, "pydicom-data", "pip install pydicom-data (in the dev extra)")
    sets = [("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm", "OBXXXX1A_expb.dcm", "OBXXXX1A_2frame.dcm",
             "OBXXXX1A_rle_2frame.dcm", "OBXXXX1A_expb_2frame.dcm"),
            ("US1_UNCR.dcm", "US1_J2KR.dcm"), ("gdcm-US-ALOKA-16.dcm", "gdcm-US-ALOKA-16_big.dcm")]
    for names in sets:
        decoded = {name: _frames(name)[1] for name in names}
        first = decoded[names[0]][0]
        assert first.mean() > 5  # a real picture (OBXXXX1A: 12.4), not a black frame (0.02 before the fix)
        for name in names[1:]:
            assert np.array_equal(decoded[name][0], first), name
        two = [d for n, d in decoded.items() if "2frame" in n]
        assert all(len(d) == 2 and np.array_equal(d[1], two[0][1]) for d in two)
    source, _ = _frames("OBXXXX1A.dcm")  # its one region: 2D tissue at 0.0262 cm per pixel
    assert source.geometry.mm_per_px == pytest.approx((0.2623, 0.2623), abs=1e-4)
    aloka, _ = _frames("gdcm-US-ALOKA-16.dcm")
    assert any("2 tissue regions" in n for n in aloka.notes)


def test_regions_without_deltas_several_regions_and_non_square_pixels_are_stated(pydicom):
    from pydicom.dataset import Dataset

    from llm4seg.dicom import physical_size, tissue_mask, ultrasound_regions
    from llm4seg.geometry import FrameGeometry

    def region(box, spatial=1, kind=1, deltas=None):
        r = Dataset()
        r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
        r.RegionSpatialFormat, r.RegionDataType = spatial, kind
        if deltas:
            r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = 3  # cm
            r.PhysicalDeltaX, r.PhysicalDeltaY = deltas
        return r

    ds = Dataset()
    ds.SequenceOfUltrasoundRegions = [region((10, 10, 49, 39), deltas=(0.02, 0.01)),  # tissue, 0.2 x 0.1 mm
                                      region((60, 10, 79, 39)),  # tissue without deltas
                                      region((0, 50, 79, 59), spatial=0, kind=0)]  # a colour bar: not tissue
    notes: list[str] = []
    regions = ultrasound_regions(ds, (60, 80), notes)
    mm, where = physical_size(ds, regions, notes)
    assert mm == pytest.approx((0.2, 0.1)) and where.startswith("SequenceOfUltrasoundRegions")
    assert any("region 1 is tissue but has no physical deltas" in n for n in notes)
    assert any("2 tissue regions" in n for n in notes) and any("non-square pixels" in n for n in notes)
    mask = tissue_mask(regions, (60, 80))
    assert mask.sum() == 40 * 30 + 20 * 30 and not mask[50:].any()  # both tissue regions, not the bar
    assert FrameGeometry(None, None, mm).area_mm2(np.ones((3, 5), np.uint8)) == pytest.approx(15 * 0.2 * 0.1)
