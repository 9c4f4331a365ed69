"""The video pipeline never hangs: an error in any stage stops all of them and surfaces within a
second, also behind a slow source (issue 9, item 13); frames that change size are written, not
silently dropped (item 10)."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from llm4seg.runtime import VideoPipeline, VideoWriterSink
from tests.runtime.conftest import stand_in


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


def FakeSegmenter(fail_at=None):  # noqa: N802  (it stands in where a Segmenter goes)
    """A Segmenter over a stand-in model: a box of probability 0.9 in each frame, an error on frame
    `fail_at` (counted across calls)."""
    seen = [0]

    def prob(batch):
        out = np.zeros((len(batch), 1, *batch.shape[2:]), np.float32)
        for i in range(len(batch)):
            if seen[0] == fail_at:
                raise RuntimeError(f"model.onnx does not match its manifest (frame {seen[0]})")
            seen[0] += 1
            out[i, 0, 5:25, 5:25] = 0.9
        return out

    return stand_in(prob)


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
    from llm4seg.runtime.core.backends.base import Backend

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


def _nan_after_white_graph(folder):
    """An ONNX float graph (with its manifest) whose probabilities turn NaN on a bright frame:
    prob = sigmoid(x[:, :1]) + 0 * log(1 - max(x)), NaN where max(x) > 1 (white, normalised)."""
    import onnx
    from onnx import TensorProto, helper

    from llm4seg.fileio import file_sha256
    from llm4seg.runtime.core.manifest import write_manifest
    from llm4seg.runtime.core.manifest_build import build_manifest

    nodes = [helper.make_node("Slice", ["image", "starts", "ends", "axes"], ["first"]),
             helper.make_node("Sigmoid", ["first"], ["sig"]),
             helper.make_node("ReduceMax", ["image"], ["top"], keepdims=1),
             helper.make_node("Sub", ["one", "top"], ["room"]),
             helper.make_node("Log", ["room"], ["log"]),
             helper.make_node("Mul", ["log", "zero"], ["nan_or_zero"]),
             helper.make_node("Add", ["sig", "nan_or_zero"], ["prob"])]
    consts = [helper.make_tensor("starts", TensorProto.INT64, [1], [0]), helper.make_tensor("ends", TensorProto.INT64, [1], [1]),
              helper.make_tensor("axes", TensorProto.INT64, [1], [1]), helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
              helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    graph = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, 64, 64])], consts)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "model.onnx")
    config = {"image_size": 64, "in_channels": 3, "num_classes": 1, "mean": [0.485, 0.456, 0.406],
              "std": [0.229, 0.224, 0.225], "threshold": 0.5, "name": "nan-after-white"}
    entry = build_manifest(artifact="model.onnx", precision="fp32", model_config=config, checkpoint_sha256="0" * 64,
                           opset=17, batch_range=(1, 1, 4), folds={}, extra={"sha256": file_sha256(folder / "model.onnx")})
    write_manifest(folder, {"model.onnx": entry})
    return folder / "model.onnx"


def test_a_model_that_turns_nan_mid_video_is_named_with_the_frame_and_the_log_kept(tmp_path):
    """Issue 44, item 11: NaN at frame 3 aborted `video` with a hint naming neither NaN nor the
    frame, and left no frame log."""
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    engine = _nan_after_white_graph(tmp_path)
    (tmp_path / "seq").mkdir()
    for i in range(6):
        cv2.imwrite(str(tmp_path / "seq" / f"{i:03d}.png"), np.full((48, 64, 3), 255 if i == 3 else 30, np.uint8))
    log = tmp_path / "frames.jsonl"
    result = CliRunner().invoke(app, ["video", str(tmp_path / "seq" / "%03d.png"), "--engine", str(engine), "--out",
                                      str(tmp_path / "out.mp4"), "--frame-log", str(log)])
    assert result.exit_code == 1, result.output
    assert "frame 3" in result.output and "NaN" in result.output, result.output
    assert [json.loads(line)["index"] for line in log.read_text().splitlines()] == [0, 1, 2]


def test_a_corrupt_image_in_a_sequence_is_flagged_and_the_rest_is_read(exported, tmp_path):
    """Issue 45, item 4: one truncated PNG ended `video 'seq/%03d.png'` there, with exit 0 and
    "0 frames"; an image sequence whose every image is unreadable must not exit 0."""
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    (tmp_path / "seq").mkdir()
    for i in range(5):
        cv2.imwrite(str(tmp_path / "seq" / f"{i:03d}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    data = (tmp_path / "seq" / "001.png").read_bytes()
    (tmp_path / "seq" / "001.png").write_bytes(data[: len(data) // 3])  # truncated
    log = tmp_path / "frames.jsonl"
    result = CliRunner().invoke(app, ["video", str(tmp_path / "seq" / "%03d.png"), "--engine", str(exported[0] / "model.onnx"),
                                      "--out", str(tmp_path / "o.mp4"), "--frame-log", str(log), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["frames_in"], report["frames_out"], report["skipped_corrupt"]) == (4, 4, 1)
    assert report["quality"]["flag_counts"]["unreadable"] == 1 and report["quality"]["flagged_frames"]["unreadable"] == [1]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4] and rows[1]["flags"] == ["unreadable"]
    for i in range(5):
        (tmp_path / "seq" / f"{i:03d}.png").write_bytes(b"not a png")
    result = CliRunner().invoke(app, ["video", str(tmp_path / "seq" / "%03d.png"), "--engine", str(exported[0] / "model.onnx"),
                                      "--out", str(tmp_path / "o2.mp4")])
    assert result.exit_code == 1 and "no frame of" in result.output and "5 unreadable" in result.output, result.output
