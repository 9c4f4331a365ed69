"""The video pipeline never hangs: an error in any stage stops all of them and surfaces within a
second, also behind a slow source (issue 9, item 13); frames that change size are written, not
silently dropped (item 10)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from llm4seg.runtime import VideoPipeline, VideoWriterSink


class Source:
    """A deterministic capture: `n` frames, optionally slow, optionally failing at frame `fail_at`."""

    def __init__(self, n=12, delay_s=0.0, fail_at=None, sizes=((48, 64),)):
        self.n, self.delay_s, self.fail_at, self.sizes, self.i = n, delay_s, fail_at, sizes, 0

    def read(self):
        time.sleep(self.delay_s)
        if self.i == self.fail_at:
            raise RuntimeError(f"decoder failed at frame {self.i}")
        if self.i >= self.n:
            return False, None
        h, w = self.sizes[self.i % len(self.sizes)]
        self.i += 1
        return True, np.full((h, w, 3), 40 * (self.i % 5), np.uint8)

    def get(self, prop):
        return 0.0

    def release(self):
        pass


class FakeSegmenter:
    """Stands in for Segmenter: a box mask per frame, an error on frame `fail_at`."""

    def __init__(self, fail_at=None):
        self.fail_at, self.seen = fail_at, 0

    def segment(self, images):
        out = []
        for img in images:
            if self.seen == self.fail_at:
                raise RuntimeError(f"model.onnx does not match its manifest (frame {self.seen})")
            self.seen += 1
            mask = np.zeros(img.shape[:2], np.uint8)
            mask[5:20, 5:20] = 1
            out.append(mask)
        return out


def failing_sink(k):
    def sink(frame):
        if frame.index == k:
            raise RuntimeError(f"encoder failed at frame {k}")
    return sink


@pytest.mark.parametrize("stage", ["decode", "infer", "encode"])
@pytest.mark.parametrize("delay_s", [0.0, 0.4], ids=["fast", "slow-source"])
def test_a_failing_stage_stops_everything_within_a_second(stage, delay_s):
    source = Source(n=1000, delay_s=delay_s, fail_at=3 if stage == "decode" else None)
    seg = FakeSegmenter(fail_at=3 if stage == "infer" else None)
    sink = failing_sink(3) if stage == "encode" else (lambda f: None)
    pipeline = VideoPipeline(seg, source, sink=sink)
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="frame 3"):
        pipeline.run()
    failed_at = 4 * delay_s  # the fourth read
    assert time.perf_counter() - t0 < failed_at + 1.5
    assert any(f"{stage} stage failed" in e for e in pipeline.report.events)


def test_frames_that_change_size_are_all_written(tmp_path):
    out = tmp_path / "out.avi"
    source = Source(n=20, sizes=((48, 64), (60, 80)))
    pipeline = VideoPipeline(FakeSegmenter(), source, sink=lambda f: None)
    pipeline.sink = VideoWriterSink(out, 10.0, fourcc="MJPG")
    report = pipeline.run()
    cap = cv2.VideoCapture(str(out))
    written = 0
    while cap.read()[0]:
        written += 1
    assert report.frames_out == written == 20
    assert pipeline.sink.written == 20 and any("resized" in e for e in report.events)


def test_a_backend_failing_on_frame_k_behind_a_real_segmenter(exported):
    """The same through the real Segmenter, with a deterministic fake backend (the case of a
    model.onnx that fails at run time)."""
    import json

    from llm4seg.runtime import Segmenter
    from llm4seg.runtime.backends.base import Backend

    out, _ = exported
    entry = json.loads((out / "manifest.json").read_text())["artifacts"]["model.onnx"]

    class FailingBackend(Backend):
        name = "fake"

        def _load(self):
            self.calls = 0

        def _infer(self, image):
            self.calls += len(image)
            if self.calls > 5:
                raise RuntimeError("backend failed at frame 5")
            return np.zeros((len(image), 1, *image.shape[2:]), np.float32)

    with Segmenter(FailingBackend(out / "model.onnx", manifest=entry)) as seg:
        pipeline = VideoPipeline(seg, Source(n=1000, delay_s=0.05), sink=lambda f: None)
        t0 = time.perf_counter()
        with pytest.raises(RuntimeError, match="frame 5"):
            pipeline.run()
    assert time.perf_counter() - t0 < 6 * 0.05 + 1.5


def test_an_unwritable_out_is_an_error_naming_it(exported, h264_clip, tmp_path):
    """Issue 33, item 14: `--out` on a read-only file system was an av.error.OSError traceback (the
    file is opened at the first packet, when the encoder flushes)."""
    import subprocess

    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    engine = str(exported[0] / "model.onnx")
    # Write-time failure (opened, then refused by the kernel): /proc takes no new files, root or not.
    result = CliRunner().invoke(app, ["video", str(h264_clip[0]), "--engine", engine, "--out", "/proc/llm4seg.mp4"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot write video /proc/llm4seg.mp4" in result.output and "hint:" in result.output


def test_a_read_only_file_system_is_refused_before_any_frame(exported, h264_clip, tmp_path):
    """Issue 33, item 14, on a real read-only mount (where this machine lets the test make one)."""
    import subprocess

    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    engine = str(exported[0] / "model.onnx")
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root in a namespace that allows mounts)")
    try:
        result = CliRunner().invoke(app, ["video", str(h264_clip[0]), "--engine", engine, "--out", str(ro / "seg.mp4")])
        assert result.exit_code == 1 and "is on a read-only file system" in result.output, result.output
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)
