"""The video pipeline on a short generated clip: frames in = frames out, overlays, clean stops."""

from __future__ import annotations

import json

import cv2
import pytest
from typer.testing import CliRunner

from llm4seg.cli.main import app
from llm4seg.data.synthetic import synthetic_dataset
from llm4seg.errors import ConfigError
from llm4seg.runtime import Segmenter, VideoPipeline


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    images, _, _ = synthetic_dataset(12, 96, seed=4)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (120, 96))
    for img in images:
        writer.write(cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), (120, 96)))
    writer.release()
    return path


def test_every_frame_comes_out_with_a_mask(exported, clip):
    seen = []
    with Segmenter(exported[0] / "model.onnx") as seg:
        report = VideoPipeline(seg, str(clip), sink=seen.append, batch=4).run()
    assert report.frames_in == report.frames_out == 12 == len(seen)
    assert [f.index for f in seen] == list(range(12))
    assert all(f.mask.shape == (96, 120) for f in seen)
    summary = report.summary()
    assert summary["latency_ms"]["infer"]["n"] == 12 and summary["fps"] > 0 and summary["dropped"] == 0


def test_sink_error_stops_cleanly_and_is_raised(exported, clip):
    def failing(frame):
        if frame.index == 3:
            raise RuntimeError("disk full")

    with Segmenter(exported[0] / "model.onnx") as seg:
        pipeline = VideoPipeline(seg, str(clip), sink=failing)
        with pytest.raises(RuntimeError, match="disk full"):
            pipeline.run()
    assert any("encode stage failed" in e for e in pipeline.report.events)


def test_source_that_stops_early_is_reported(exported, clip, tmp_path):
    truncated = tmp_path / "truncated.avi"
    data = clip.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    seen = []
    with Segmenter(exported[0] / "model.onnx") as seg:
        report = VideoPipeline(seg, str(truncated), sink=seen.append).run()
    assert 0 < report.frames_out == len(seen) < 12


def test_missing_source(exported, tmp_path):
    with Segmenter(exported[0] / "model.onnx") as seg:
        with pytest.raises(ConfigError, match="does not exist"):
            VideoPipeline(seg, str(tmp_path / "none.mp4"), sink=print)


def test_video_cli_writes_overlaid_file(exported, clip, tmp_path):
    out = tmp_path / "out.avi"
    result = CliRunner().invoke(app, ["video", str(clip), "--engine", str(exported[0] / "model.onnx"), "--out", str(out),
                                      "--overlay", "fill", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["frames_out"] == 12 and payload["latency_ms"]["end_to_end"]["p50"] > 0
    # H.264 with PyAV where installed (the `video` extra), else OpenCV's avc1 or mp4v; the report says which
    assert payload["codec"] in ("h264", "avc1", "mp4v") and payload["container"] == "avi"
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    ok, frame = cap.read()
    assert ok and frame.shape == (96, 120, 3)


def test_opening_a_writer_prints_no_ffmpeg_probe_lines(tmp_path):
    """Issue 19, item 9: every `video` printed FFmpeg's 'h264_v4l2m2m ... Could not find a valid device'
    while OpenCV probed H.264; the probe runs with file descriptor 2 silenced."""
    import subprocess
    import sys

    code = ("from pathlib import Path; from llm4seg.runtime.doors.video.sinks import _quiet_writer; "
            f"w = _quiet_writer(Path({str(tmp_path / 'o.mp4')!r}), 'avc1', 10, (64, 64)); print('done')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "done" in result.stdout, result.stderr
    assert "h264" not in result.stderr and "ERROR" not in result.stderr, result.stderr


def test_a_valid_mp4_with_zero_frames_is_named_as_such(tmp_path):
    """Issue 20, item 16: it was reported as a codec problem."""
    import cv2

    from llm4seg.errors import ConfigError
    from llm4seg.runtime.doors.video.pipeline import open_source

    path = tmp_path / "zero.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    writer.release()  # no frame written: ftyp, an empty mdat, moov
    with pytest.raises(ConfigError, match="valid MP4 file with no frames") as info:
        open_source(str(path))
    assert "codec" not in info.value.hint


def test_a_runtime_only_video_says_how_to_get_h264(exported, tmp_path, monkeypatch):
    """Issue 34, item 4: without PyAV `llm4seg video` wrote mp4v without a word."""
    import json as _json

    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    clip = _mjpg_clip_without_pyav(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ["video", str(clip), "--engine", str(exported[0] / "model.onnx"),
                                      "--out", str(tmp_path / "o.mp4"), "--json"])
    assert result.exit_code == 0, result.output
    report = _json.loads(result.stdout)
    noted = any("pip install 'llm4seg[video]'" in e for e in report["events"])
    assert noted == (report["codec"] == "mp4v"), report  # said exactly when OpenCV fell back to mp4v


def _mjpg_clip_without_pyav(tmp_path, monkeypatch):
    """A 4-frame MJPG clip, with PyAV hidden from the video sources and sinks (a runtime-only box)."""
    import cv2
    import numpy as np

    from llm4seg.runtime.doors.video import sinks as video_sinks
    from llm4seg.runtime.doors.video import sources as video_sources

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 64))
    for i in range(4):
        writer.write(np.full((64, 80, 3), 40 * i, np.uint8))
    writer.release()
    monkeypatch.setattr(video_sinks, "pyav_available", lambda: False)
    monkeypatch.setattr(video_sources, "pyav_available", lambda: False)
    return clip


def test_printed_notes_keep_their_brackets(exported, tmp_path, monkeypatch):
    """Issue 45, item 2: rich's markup ate `[video]` from the printed note (`pip install 'llm4seg'
    writes H.264`); the report dict was right, the terminal was not. The printed text is tested."""
    from typer.testing import CliRunner

    from llm4seg.cli.main import app
    from llm4seg.cli.render import stdout

    with stdout.capture() as captured:
        stdout.print("note: pip install 'llm4seg[video]' and [bold]x[/bold]")
    assert captured.get().strip() == "note: pip install 'llm4seg[video]' and [bold]x[/bold]"
    clip = _mjpg_clip_without_pyav(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, ["video", str(clip), "--engine", str(exported[0] / "model.onnx"),
                                      "--out", str(tmp_path / "o.mp4")])
    assert result.exit_code == 0, result.output
    if "mp4v" in result.stdout:  # OpenCV had no H.264 encoder: the note is printed, brackets and all
        assert "note: PyAV is not installed" in result.stdout and "pip install 'llm4seg[video]' writes H.264" in result.stdout
