"""H.264 by default (issue 22, item 1): `llm4seg video` writes H.264 with PyAV, keeping the source's
frame rate and timestamps; reads with PyAV; OpenCV stays a fallback; the report names both."""

from __future__ import annotations

import json
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from llm4seg.cli.main import app
from llm4seg.runtime import Segmenter, VideoPipeline
from llm4seg.runtime.doors.video.pipeline import PyAVSink, open_sink, open_source
from tests.runtime.conftest import box_masks, decoded, needs_pyav


def test_video_cli_writes_h264_with_the_sources_timestamps(exported, h264_clip, tmp_path):
    clip, pts_s, _ = h264_clip
    out = tmp_path / "seg.mp4"
    result = CliRunner().invoke(app, ["video", str(clip), "--engine", str(exported[0] / "model.onnx"), "--out", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["codec"], payload["reader"], payload["frames_out"]) == ("h264", "pyav", 12)
    assert payload["container"].startswith("mp4")
    codec, container, rate, times, frames = decoded(out)
    assert codec == "h264" and "mp4" in container and len(frames) == 12
    # Not re-timed at a constant rate. One tick of the 90 kHz clock both files use: timestamps are
    # integers rounded once, so this holds on any machine (no floating-point arithmetic of the CPU's).
    assert times == pytest.approx(pts_s, abs=1 / 90000)
    assert frames[0].shape == (96, 120, 3)


def test_the_plain_command_line_says_h264(exported, h264_clip, tmp_path):
    clip, _, _ = h264_clip
    out = tmp_path / "seg.mp4"
    result = CliRunner().invoke(app, ["video", str(clip), "--engine", str(exported[0] / "model.onnx"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "h264 in mp4" in result.stdout and "read with pyav" in result.stdout


def test_masks_are_those_of_the_segmenter_on_pyav_frames(exported, h264_clip):
    clip, pts_s, _ = h264_clip
    seen = []
    with Segmenter(exported[0] / "model.onnx") as seg:
        pipeline = VideoPipeline(seg, str(clip), sink=seen.append, batch=3)
        report = pipeline.run()
        assert pipeline.cap.reader == "pyav" and report.frames_out == 12
        assert [f.pts_s for f in seen] == pytest.approx(pts_s, abs=1 / 90000)
        for f in seen:
            np.testing.assert_array_equal(f.mask, seg.segment_one(f.image))


def test_frame_rate_kept_and_odd_sizes_padded(tmp_path):
    needs_pyav()
    frames = [np.full((45, 61, 3), 30 * i, np.uint8) for i in range(5)]
    sink = PyAVSink(tmp_path / "odd.mp4", fps=29.97)
    for i, (image, mask) in enumerate(zip(frames, box_masks(frames))):
        sink(SimpleNamespace(image=image, mask=mask, index=i, pts_s=None))
    sink.close()
    codec, _, rate, times, out = decoded(tmp_path / "odd.mp4")
    assert codec == "h264" and rate == Fraction(30000, 1001) and len(out) == 5
    assert out[0].shape == (46, 62, 3)  # 4:2:0 needs even sides: one edge pixel added
    assert times == pytest.approx([i * 1001 / 30000 for i in range(5)], abs=1 / 90000)


def test_webm_gets_vp9_and_opencv_is_the_fallback(tmp_path):
    needs_pyav()
    frames = [np.full((48, 64, 3), 50, np.uint8)] * 3
    for name, writer, codecs in (("o.webm", "auto", ("vp9",)), ("o.avi", "opencv", ("avc1", "mp4v"))):
        sink = open_sink(tmp_path / name, 10.0, writer=writer)
        for i, (image, mask) in enumerate(zip(frames, box_masks(frames))):
            sink(SimpleNamespace(image=image, mask=mask, index=i, pts_s=None))
        sink.close()
        assert sink.codec in codecs and decoded(tmp_path / name)[0] in ("vp9", "h264", "mpeg4")


def test_reader_choice_and_bad_names(h264_clip, tmp_path):
    from llm4seg.errors import ConfigError

    clip, _, _ = h264_clip
    for reader in ("pyav", "opencv"):
        src, live = open_source(str(clip), reader)
        assert src.reader == reader and not live and src.read()[0]
        src.release()
    with pytest.raises(ConfigError, match="reader 'vlc' is not known"):
        open_source(str(clip), "vlc")
    with pytest.raises(ConfigError, match="writer 'x' is not known"):
        open_sink(tmp_path / "o.mp4", 10.0, writer="x")
