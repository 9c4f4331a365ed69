"""DICOM results (issue 35): a SEG per chosen frame of pydicom's ultrasound cine that highdicom and
pydicom read back with its references and algorithm, the overlay as a multi-frame Secondary
Capture, and bad requests refused with nothing half written."""

from __future__ import annotations

import numpy as np
import pytest

from llm4seg.errors import ConfigError
from llm4seg.runtime import Segmenter, VideoPipeline
from tests.conftest import installed_or_skip
from tests.runtime.conftest import AllForeground, assert_valid_dicom, write_us_cine


@pytest.fixture(autouse=True)
def highdicom():
    installed_or_skip(lambda: __import__("highdicom"), "highdicom", "pip install 'llm4seg[dicom]' (make setup installs it)")
    import highdicom

    return highdicom


@pytest.fixture(scope="module")
def cine():
    from pydicom.data import get_testdata_file

    return get_testdata_file("examples_ybr_color.dcm")  # 30 frames 320x240, YBR_FULL_422 JPEG, no Frame of Reference


def _run(model, path, frames, overlay_sc=False):
    """Run the pipeline on `path` with DicomResults collecting `frames`; returns (results, frames seen)."""
    from llm4seg.runtime.doors.dicom.results import DicomResults
    from llm4seg.runtime.doors.dicom.seg import Algorithm

    seen = []
    pipeline = VideoPipeline(model, path, sink=seen.append)
    results = DicomResults(pipeline.cap, frames, Algorithm("llm4seg test", "9.9", "ab" * 32), overlay_sc)
    pipeline.sink = results.tee(pipeline.sink)
    pipeline.run()
    return results, seen


def test_a_seg_per_chosen_frame_references_the_cine_and_names_the_algorithm(highdicom, cine, tmp_path):
    import pydicom

    from llm4seg.runtime.doors.dicom.results import write_datasets

    # All foreground: each mask is exactly the tissue region (a test model may leave masks empty).
    results, seen = _run(AllForeground(), cine, [1, 7, 30])
    paths = write_datasets(results.datasets(), tmp_path)
    assert [p.name for p in paths] == ["seg_frame0001.dcm", "seg_frame0007.dcm", "seg_frame0030.dcm"]
    source = pydicom.dcmread(cine, stop_before_pixels=True)
    region = seen[0].mask
    assert 0 < region.sum() < region.size  # the crop is in the SEG, not the whole frame
    for path, number in zip(paths, (1, 7, 30)):
        assert_valid_dicom(path)  # issue 45, item 9: as a PACS judges it
        seg = highdicom.seg.segread(path)
        assert seg.get_source_image_uids() == [(source.StudyInstanceUID, source.SeriesInstanceUID,
                                                 source.SOPInstanceUID)]
        assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
        ref = seg.SourceImageSequence[0]
        assert (ref.ReferencedSOPClassUID, int(ref.ReferencedFrameNumber)) == (source.SOPClassUID, number)
        per_frame = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert int(per_frame.ReferencedFrameNumber) == number
        algorithm = seg.get_segment_description(1).algorithm_identification[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("llm4seg test", "9.9")
        assert "ab" * 32 in algorithm.AlgorithmParameters
        plain = pydicom.dcmread(path)  # pydicom alone reads the mask back, bit for bit
        assert np.array_equal(plain.pixel_array.astype(bool), seen[number - 1].mask.astype(bool))


def _synthetic_cine(path, n=4, size=96):
    """An uncompressed multi-frame ultrasound of synthetic frames (the test model segments them),
    with its masks: the cine where a model's SEG is not two empty masks agreeing."""
    from llm4seg.data.synthetic import synthetic_dataset

    images, masks, _ = synthetic_dataset(n, size, seed=21)
    write_us_cine(path, images, "t", complete=False)
    return path, masks


def test_the_segs_hold_the_models_masks(exported, tmp_path):
    import pydicom

    from llm4seg.metrics import image_metrics
    from llm4seg.runtime.doors.dicom.results import write_datasets
    from llm4seg.runtime.doors.dicom.seg import Algorithm

    path, truth = _synthetic_cine(tmp_path / "synthetic.dcm")
    with Segmenter(exported[0] / "model.onnx") as seg:
        results, seen = _run(seg, path, [2, 3])
        entry = seg.entry
    for written, number in zip(write_datasets(results.datasets(), tmp_path / "out"), (2, 3)):
        mask = seen[number - 1].mask.astype(bool)
        assert image_metrics(mask, truth[number - 1])["dice"] > 0.5  # the model segments: masks, not emptiness
        assert np.array_equal(pydicom.dcmread(written).pixel_array.astype(bool), mask)
    assert Algorithm.from_entry(entry).manifest_sha256 == entry.raw["entry_sha256"]


def test_the_loop_overlay_is_a_lossless_multiframe_secondary_capture(cine, tmp_path):
    import pydicom

    from llm4seg.dicom import DicomSource
    from llm4seg.runtime.doors.dicom.results import write_datasets
    from llm4seg.runtime.core.overlay import overlay

    results, seen = _run(AllForeground(), cine, [1], overlay_sc=True)
    path = write_datasets(results.datasets(), tmp_path)[-1]
    assert_valid_dicom(path)
    sc = pydicom.dcmread(path)
    source = pydicom.dcmread(cine, stop_before_pixels=True)
    assert sc.SOPClassUID.name == "Multi-frame True Color Secondary Capture Image Storage"
    assert (int(sc.NumberOfFrames), sc.StudyInstanceUID, sc.SourceImageSequence[0].ReferencedSOPInstanceUID) == \
        (30, source.StudyInstanceUID, source.SOPInstanceUID)
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"] and float(sc.FrameTime) == pytest.approx(33.3333, abs=1e-3)
    frames = sc.pixel_array
    src = DicomSource(cine)
    for i in (0, 29):
        for _ in range(i + 1 - src._index):
            ok, image = src.read()
        expected = overlay(image, seen[i].mask, "contour")[..., ::-1]  # what the video shows, in RGB
        assert np.array_equal(frames[i], expected)
        assert not np.array_equal(frames[i], image[..., ::-1])  # the contour is drawn


def test_frame_lists_are_checked_against_the_source():
    from llm4seg.runtime.doors.dicom.seg import frame_numbers_from_text

    assert frame_numbers_from_text("7, 1,3-4", 30) == [1, 3, 4, 7]
    assert frame_numbers_from_text("all", 3) == [1, 2, 3]
    for text, words in (("0", "outside frames 1-30"), ("31", "outside frames 1-30"), ("a", "not a frame number"),
                        ("5-2", "outside"), (",", "names no frame")):
        with pytest.raises(ConfigError, match=words):
            frame_numbers_from_text(text, 30)


def test_nothing_is_half_written(cine, tmp_path):
    from llm4seg.runtime.doors.dicom.results import write_datasets

    results, _ = _run(AllForeground(), cine, [1, 2])
    datasets = results.datasets()

    class Broken:
        def save_as(self, path, **kwargs):
            open(path, "wb").write(b"half")
            raise OSError(28, "No space left on device")

    with pytest.raises(ConfigError, match="No space left"):
        write_datasets({**datasets, "seg_frame0003.dcm": Broken()}, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    write_datasets(datasets, tmp_path / "out")
    with pytest.raises(ConfigError, match="already holds seg_frame0001.dcm"):  # never overwritten
        write_datasets(datasets, tmp_path / "out")


def test_a_source_without_its_uids_gets_no_result(cine):
    import pydicom

    from llm4seg.runtime.doors.dicom.capture import OverlayCapture
    from llm4seg.runtime.doors.dicom.seg import Algorithm, seg_for_frame

    source = pydicom.dcmread(cine, stop_before_pixels=True)
    del source.StudyInstanceUID
    mask = np.zeros((240, 320), np.uint8)
    with pytest.raises(ConfigError, match=r"no StudyInstanceUID \(0020,000D\)"):
        seg_for_frame(source, 1, mask, Algorithm("a", "1", "x"), "1.2.3", 1)
    capture = OverlayCapture([source], 33.3)
    capture.add(np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(ConfigError, match="StudyInstanceUID"):
        capture.dataset(Algorithm("a", "1", "x"), "1.2.3")


def test_a_chosen_frame_the_run_never_reached_writes_no_seg(cine):
    from llm4seg.runtime.doors.dicom.results import DicomResults
    from llm4seg.runtime.doors.dicom.seg import Algorithm
    from llm4seg.dicom import DicomSource

    results = DicomResults(DicomSource(cine), [1, 5], Algorithm("a", "1", "x"))

    class Frame:
        index, mask, image = 0, np.ones((240, 320), np.uint8), np.zeros((240, 320, 3), np.uint8)

    results(Frame())  # frame 1 only: the run stopped
    with pytest.raises(ConfigError, match=r"frames \[5\].*never segmented.*no SEG was written"):
        results.datasets()


def test_video_cli_writes_segs_and_refuses_a_non_dicom_source(cine, exported, tmp_path):
    import json

    import highdicom
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    engine = str(exported[0] / "model.onnx")
    out = tmp_path / "loop.mp4"
    result = CliRunner().invoke(app, ["video", cine, "--engine", engine, "--out", str(out), "--seg-frames", "1,15",
                                      "--overlay-sc", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dicom"]["files"] == ["seg_frame0001.dcm", "seg_frame0015.dcm", "overlay.dcm"]
    assert report["physical"]["mm_per_px"] == pytest.approx([0.5105, 0.5105], abs=1e-4) and out.stat().st_size > 0
    seg = highdicom.seg.segread(tmp_path / "loop-dicom" / "seg_frame0015.dcm")
    assert int(seg.SourceImageSequence[0].ReferencedFrameNumber) == 15
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(out.read_bytes())
    result = CliRunner().invoke(app, ["video", str(clip), "--engine", engine, "--out", str(tmp_path / "b.mp4"),
                                      "--seg-frames", "1"])
    assert result.exit_code == 1 and "need a DICOM source" in result.output
    result = CliRunner().invoke(app, ["video", cine, "--engine", engine, "--out", str(tmp_path / "c.mp4"),
                                      "--seg-frames", "31"])
    assert result.exit_code == 1 and "outside frames 1-30" in result.output


def test_the_120_frame_cine_of_pydicom_data_end_to_end(exported, tmp_path):
    """pydicom-data's 640x480 cine (120 frames, JPEG baseline, one tissue region at 0.051 cm/px):
    H.264 out, every mask inside the tissue region, areas in mm^2, a SEG of frame 60."""
    import json

    import av
    import pydicom
    from pydicom.data import get_testdata_file
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    def probe():
        if get_testdata_file("color3d_jpeg_baseline.dcm") is None:  # pydicom returns None for pydicom-data's files
            raise FileNotFoundError("color3d_jpeg_baseline.dcm is not there")

    installed_or_skip(probe, "pydicom-data", "pip install pydicom-data (in the dev extra)")
    cine = get_testdata_file("color3d_jpeg_baseline.dcm")
    out = tmp_path / "cine.mp4"
    result = CliRunner().invoke(app, ["video", cine, "--engine", str(exported[0] / "model.onnx"), "--out", str(out),
                                      "--seg-frames", "60", "--frame-log", str(tmp_path / "frames.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["frames_out"], report["codec"]) == (120, "h264")
    assert report["physical"]["mm_per_px"] == pytest.approx([0.5105, 0.5105], abs=1e-4)
    assert report["physical"]["tissue_regions"] == [[84, 31, 595, 414]]
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 120
    lines = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert len(lines) == 120
    # rel 1e-3: 0.5105 is the file's 0.05104970... cm rounded to four places (0.006 % off, squared)
    assert all(r["area_mm2"] == pytest.approx(r["area_px"] * 0.5105 ** 2, rel=1e-3) for r in lines)
    seg = pydicom.dcmread(tmp_path / "cine-dicom" / "seg_frame0060.dcm")
    mask = seg.pixel_array.astype(bool)
    outside = np.ones((480, 640), bool)
    outside[31:415, 84:596] = False
    assert not (mask & outside).any()  # the crop: nothing outside the tissue region
    assert int(mask.sum()) == lines[59]["area_px"]  # the SEG holds frame 60's mask


def test_a_series_folder_plays_in_instance_order_and_each_seg_references_its_image(tmp_path):
    """Five single-frame images of one series, nested as PACS exports are, named out of order: played
    by Instance Number with Content Time as timestamps; the SEG of frame 3 references the third
    image (no frame number: a single-frame IOD); the overlay references all five."""
    import pydicom
    from pydicom.uid import generate_uid

    from llm4seg.dicom import open_dicom
    from llm4seg.runtime.doors.dicom.results import DicomResults, write_datasets
    from llm4seg.runtime.doors.dicom.seg import Algorithm
    from tests.runtime.conftest import write_dicom

    folder = tmp_path / "export" / "PAT1" / "STU1"
    folder.mkdir(parents=True)
    (tmp_path / "export" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")  # an index, not an image
    study, series = generate_uid(), generate_uid()
    uids = {}
    for number, name in ((3, "IMG001"), (1, "IMG007"), (5, "IMG002"), (2, "IMG010"), (4, "IMG003")):
        rgb = np.full((48, 64, 3), 40 * number, np.uint8)
        path = write_dicom(pydicom, rgb, folder / name, StudyInstanceUID=study, SeriesInstanceUID=series,
                           InstanceNumber=number, ContentTime=f"1015{number * 2:02d}.5")
        uids[number] = pydicom.dcmread(path).SOPInstanceUID
    source = open_dicom(tmp_path / "export")
    assert source.frame_count == 5 and source.times_s == pytest.approx([0, 2, 4, 6, 8])
    seen = []
    pipeline = VideoPipeline(AllForeground(), str(tmp_path / "export"), sink=seen.append)
    results = DicomResults(pipeline.cap, [3], Algorithm("t", "1", "x"), overlay_sc=True)
    pipeline.sink = results.tee(pipeline.sink)
    pipeline.run()
    assert [int(f.image[0, 0, 0]) for f in seen] == [40, 80, 120, 160, 200]  # Instance Number order
    assert [f.pts_s for f in seen] == pytest.approx([0, 2, 4, 6, 8])
    seg_path, overlay_path = write_datasets(results.datasets(), tmp_path / "out")
    ref = pydicom.dcmread(seg_path).SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == uids[3] and "ReferencedFrameNumber" not in ref
    overlay = pydicom.dcmread(overlay_path)
    assert [r.ReferencedSOPInstanceUID for r in overlay.SourceImageSequence] == [uids[n] for n in range(1, 6)]
    assert int(overlay.NumberOfFrames) == 5


def test_a_folder_that_is_not_one_series_is_refused_by_name(tmp_path):
    import shutil

    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    from llm4seg.dicom import open_dicom
    from tests.runtime.conftest import write_dicom

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty: holds no DICOM file"):
        open_dicom(tmp_path / "empty")
    two = tmp_path / "two"
    two.mkdir()
    for i in range(3):
        write_dicom(pydicom, np.zeros((8, 8, 3), np.uint8), two / f"{i}.dcm", SeriesInstanceUID=generate_uid())
    with pytest.raises(ConfigError, match="(?s)two: holds 3 series: .*pass the folder of one series"):
        open_dicom(two)
    mixed, series = tmp_path / "mixed", generate_uid()
    mixed.mkdir()
    write_dicom(pydicom, np.zeros((8, 8, 3), np.uint8), mixed / "a.dcm", SeriesInstanceUID=series)
    write_dicom(pydicom, np.zeros((9, 8, 3), np.uint8), mixed / "b.dcm", SeriesInstanceUID=series)
    with pytest.raises(ConfigError, match=r"mixed: holds images of 2 sizes"):
        open_dicom(mixed)
    cine = tmp_path / "cine"
    cine.mkdir()
    shutil.copy(get_testdata_file("examples_ybr_color.dcm"), cine / "loop.dcm")
    assert open_dicom(cine).frame_count == 30  # one file: that file
    ds = pydicom.dcmread(cine / "loop.dcm")
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(cine / "loop2.dcm")
    with pytest.raises(ConfigError, match=r"holds multi-frame files \(loop.dcm, loop2.dcm\)"):
        open_dicom(cine)


def test_the_printed_report_gives_the_geometry_and_every_note_and_no_library_warning(cine, exported, tmp_path):
    """Issue 45, items 10-11: a clinician reads the terminal: the pixel size, the area in mm^2 and the
    region notes were only in --json; highdicom's own warning ("Encoding an empty image with
    omit_empty_frames...") reached the terminal."""
    import pydicom
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    ds = pydicom.dcmread(cine)
    region = ds.SequenceOfUltrasoundRegions[0]
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 600, 400  # written for a larger image: a note
    ds.save_as(tmp_path / "cine.dcm")
    result = CliRunner().invoke(app, ["video", str(tmp_path / "cine.dcm"), "--engine", str(exported[0] / "model.onnx"),
                                      "--out", str(tmp_path / "o.mp4"), "--seg-frames", "1-3"])
    assert result.exit_code == 0, result.output
    assert "geometry: 0.5105 x 0.5105 mm per pixel (SequenceOfUltrasoundRegions" in result.output, result.output
    assert "note: region 0 looks written for a larger image" in result.output
    assert "omit_empty_frames" not in result.output and "Encoding an empty image" not in result.output
    masks = [pydicom.dcmread(p).pixel_array.any() for p in sorted((tmp_path / "o-dicom").glob("seg_*.dcm"))]
    assert ("had an empty mask" in result.output) == (not all(masks))  # said in our words, exactly when true
    assert "mask area mean" in result.output
