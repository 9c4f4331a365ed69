"""A Holoscan operator and application (issue 22, item 3), run by real Holoscan on the CPU:
numpy frames -> SegmentOp -> sink gives the Segmenter's masks; the example app wired from its
YAML writes H.264 and reports per-operator and data-flow-tracked latency."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from llm4seg.errors import ConfigError
from llm4seg.runtime import Segmenter
from tests.conftest import installed_or_skip
from tests.runtime.conftest import decoded

pytestmark = pytest.mark.filterwarnings("ignore:Current stack size:RuntimeWarning")


@pytest.fixture(autouse=True, scope="module")
def holoscan():
    installed_or_skip(lambda: __import__("holoscan.core"), "Holoscan", "pip install 'llm4seg[holoscan]'")


def test_segment_op_in_a_users_graph_gives_the_segmenters_masks(exported):
    from holoscan.conditions import CountCondition
    from holoscan.core import Application, Operator

    from llm4seg.runtime.doors.holoscan import SegmentOp

    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (70 + 3 * i, 90, 3), dtype=np.uint8) for i in range(6)]
    received = []

    class NumpySource(Operator):
        def setup(self, spec):
            spec.output("out")

        def compute(self, op_input, op_output, context):
            op_output.emit(frames[self.sent], "out")
            self.sent += 1

    class Collect(Operator):
        def setup(self, spec):
            spec.input("in")

        def compute(self, op_input, op_output, context):
            received.append(op_input.receive("in"))

    class Graph(Application):
        def compose(self):
            source = NumpySource(self, CountCondition(self, len(frames)), name="numpy")
            source.sent = 0
            segment = SegmentOp(self, name="segment", artifact=str(exported[0] / "model.onnx"))
            self.add_flow(source, segment)
            self.add_flow(segment, Collect(self, name="collect"))

    Graph().run()
    assert len(received) == len(frames)
    with Segmenter(exported[0] / "model.onnx") as seg:
        for frame, item in zip(frames, received):
            np.testing.assert_array_equal(item["frame"], frame)
            np.testing.assert_array_equal(item["mask"], seg.segment_one(frame))
            assert item["overlay"].shape == frame.shape


def _app_config(tmp_path, clip, artifact):
    from llm4seg.runtime.doors.holoscan import EXAMPLE_CONFIG

    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["source"]["source"], config["segment"]["artifact"] = str(clip), str(artifact)
    config["sink"]["out"] = str(tmp_path / "holoscan.mp4")
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_example_app_from_yaml_writes_h264_and_reports_latency(exported, h264_clip, tmp_path):
    from llm4seg.runtime.doors.holoscan import run_app

    clip, pts_s, _ = h264_clip
    report = run_app(_app_config(tmp_path, clip, exported[0] / "model.onnx"), {"sink": {"keep_results": True}})
    assert report["frames_out"] == 12 and (report["codec"], report["container"]) == ("h264", "mp4")
    assert set(report["operator_compute_ms"]) == {"source", "segment", "sink"}
    assert report["operator_compute_ms"]["segment"]["n"] == 12
    e2e = report["e2e_latency_ms"]["source,segment,sink"]  # Holoscan's own data-flow tracker
    assert 0 < e2e["avg"] <= e2e["max"]
    tracked = report["operator_latency_ms"]  # per operator, from the tracker's log
    assert set(tracked) == {"source", "segment", "sink"} and tracked["segment"]["n"] == 12
    assert tracked["segment"]["p50"] >= 0.99 * report["operator_compute_ms"]["segment"]["p50"]  # it includes it
    quality = report["quality"]  # issue 36: the operator's flicker, confidence and flags
    assert quality["pairs"] == 11 and quality["smoothing"] == "none" and 0 < quality["confidence"]["mean"] <= 1
    codec, _, _, times, frames = decoded(tmp_path / "holoscan.mp4")
    assert codec == "h264" and len(frames) == 12 and times == pytest.approx(pts_s, abs=1 / 90000)
    from llm4seg.runtime.doors.video.pipeline import open_source

    source, _ = open_source(str(clip))
    with Segmenter(exported[0] / "model.onnx") as seg:
        for result in report["results"]:
            np.testing.assert_array_equal(result.mask, seg.segment_one(source.read()[1]))
    source.release()


def test_the_module_runs_as_a_command(exported, h264_clip, tmp_path):
    clip, _, _ = h264_clip
    config = _app_config(tmp_path, clip, exported[0] / "model.onnx")
    result = subprocess.run([sys.executable, "-m", "llm4seg.runtime.doors.holoscan", str(config), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames_out"] == 12
    assert "[info]" not in result.stderr  # Holoscan's per-run log lines are quietened


def test_inference_op_config_runs_the_frames_graph_and_holoscan_parses_it(exported, tmp_path):
    """The config names the any-size frames graph (the float graph's own, found through the
    manifest), leaves no resize or normalisation to FormatConverterOp, and Holoscan's own config
    loader reads it back as operator keyword arguments."""
    from holoscan.core import Application

    from llm4seg.runtime.doors.holoscan import inference_op_config

    manifest = exported[0] / "manifest.json"
    entry = json.loads(manifest.read_text())["artifacts"]["model.fp16.frames.onnx"]
    config = inference_op_config(manifest, "model.fp16.onnx")
    assert config["llm4seg"]["artifact"] == "model.fp16.frames.onnx" == config["inference"]["model_path_map"]["llm4seg"].split("/")[-1]
    assert config["inference"]["pre_processor_map"] == {"llm4seg": ["frames"]}
    assert config["inference"]["inference_map"] == {"llm4seg": ["prob", "mask"]}
    assert config["inference"]["dynamic_input_dims"] and config["inference"]["enable_fp16"]
    converter = config["format_converter"]
    assert "resize_width" not in converter and "scale_max" not in converter  # the graph does both
    assert converter["out_channel_order"] == ([2, 1, 0] if entry["inputs"][0]["color"] == "BGR" else [0, 1, 2])
    assert config["status"].startswith("NOT RUN")
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump({k: config[k] for k in ("format_converter", "inference")}))
    app = Application()
    app.config(str(path))
    assert dict(app.kwargs("inference"))["inference_map"] == {"llm4seg": ["prob", "mask"]}
    assert list(dict(app.kwargs("format_converter"))["out_channel_order"]) == converter["out_channel_order"]
    with pytest.raises(ConfigError, match="'model.plan' is not in"):
        inference_op_config(manifest, "model.plan")

def test_the_module_has_an_error_boundary(tmp_path):
    """Issue 34, item 9: `python -m llm4seg.runtime.doors.holoscan` printed tracebacks."""
    result = subprocess.run([sys.executable, "-m", "llm4seg.runtime.doors.holoscan", str(tmp_path / "missing.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: Holoscan app config" in result.stderr and "hint:" in result.stderr


BAD_APPS = {  # issue 33, item 15: each was ignored silently, a traceback, or "video source None does not exist"
    "": "holds nothing",
    "- source\n- segment\n": "holds a list",
    "source: {source: clip.mp4}\nsegment: {artifact: a.onnx}\nextra: {x: 1}\n": "unknown section 'extra'",
    "source: {source: clip.mp4, fps: 30}\nsegment: {artifact: a.onnx}\n": "unknown key 'fps' in section 'source'",
    "source: {reader: pyav}\nsegment: {artifact: a.onnx}\n": "section 'source' lacks 'source'",
    "source: {source: clip.mp4}\n": "section 'segment' is missing",
    "source: {source: clip.mp4}\nsegment: {artifact: a.onnx}\nscheduler: {kind: fast}\n": "scheduler.kind is 'fast'",
    "source: {source: clip.mp4}\nsegment: {artifact: a.onnx}\nsink: {keep_results: 'yes'}\n": "sink.keep_results is 'yes'",
    "source: [unclosed\n": "cannot be read as YAML",
}


@pytest.mark.parametrize("text", sorted(BAD_APPS))
def test_the_app_yaml_is_checked_against_its_schema(tmp_path, text):
    from llm4seg.runtime.doors.holoscan import run_app

    path = tmp_path / "app.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=BAD_APPS[text].replace("[", r"\[")) as info:
        run_app(path)
    assert str(path) in info.value.message and info.value.hint


def test_an_unwritable_out_fails_the_app_with_its_error(exported, h264_clip, tmp_path):
    """Issue 33, item 14: the sink's write error (raised in its stop()) was logged by Holoscan and
    the app exited 0 with its report."""
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump({"source": {"source": str(h264_clip[0])},
                                    "segment": {"artifact": str(exported[0] / "model.onnx")},
                                    "sink": {"out": "/proc/llm4seg-cannot-write.mp4"}}))
    result = subprocess.run([sys.executable, "-m", "llm4seg.runtime.doors.holoscan", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: cannot write video /proc/llm4seg-cannot-write.mp4" in result.stderr
    assert "frames in" not in result.stdout  # no report for a run that failed


def test_the_segment_op_smooths_and_scores_frames(exported, h264_clip, tmp_path):
    """Issue 36: `smooth` and the per-frame quality from the app's YAML."""
    from llm4seg.runtime.doors.holoscan import run_app

    path = _app_config(tmp_path, h264_clip[0], exported[0] / "model.onnx")
    report = run_app(path, {"segment": {"smooth": "median:3"}})
    assert report["quality"]["smoothing"].startswith("causal median of 3 frames")
    assert sum(report["quality"]["flag_counts"].values()) >= 0 and report["quality"]["pairs"] == 11
