"""NVIDIA Holoscan operators and an example application around the Segmenter.

    from llm4seg.runtime.holoscan import SegmentOp      # frames in, {"frame", "mask", "overlay"} out

`SegmentOp` runs any artifact the Segmenter runs (ONNX on the CPU, TensorRT plans and .pt2 on a
GPU) inside a Holoscan graph. `SegmentApp` wires video source -> SegmentOp -> video sink from a
YAML file, the way Holoscan applications are configured (`app.config(path)`; `segment_app.yaml`
beside this module is the example), and `run_app` returns the run's report: frames, per-operator
latency and end-to-end latency from Holoscan's data-flow tracking (and each operator's own
compute time, measured inside it).

    python -m llm4seg.runtime.holoscan app.yaml [--json]

Holoscan is optional (`pip install 'llm4seg[holoscan]'`): the classes are made on first use, so
importing this module does not import Holoscan. Holoscan's CUDA operators (InferenceOp,
FormatConverterOp, HolovizOp) need a GPU; `inference_op_config` writes their configuration from
the manifest for GPU deployments (NOT RUN here: no GPU).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.errors import ConfigError, Llm4SegError
from llm4seg.runtime.stats import percentiles_ms

EXAMPLE_CONFIG = Path(__file__).with_name("segment_app.yaml")
_CLASSES: dict[str, type] = {}


def _holoscan() -> Any:
    from llm4seg._optional import require

    with warnings.catch_warnings():
        # "Current stack size (8.0 MB) is below the recommended minimum": for its CUDA operators.
        warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)
        holoscan = require("holoscan", "Holoscan operators")
    if "HOLOSCAN_LOG_LEVEL" not in os.environ:  # its per-run [info] lines; the user's setting wins
        from holoscan.logger import LogLevel, set_log_level

        set_log_level(LogLevel.WARN)
    return holoscan


def _kept(method: Any) -> Any:
    """Wrap an operator's compute/stop so its exception is kept on the operator (`errors`) before
    Holoscan sees it: Holoscan logs an exception in stop() and goes on, so run_app raises it after."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return method(self, *args)
        except Exception as exc:
            self.__dict__.setdefault("errors", []).append(exc)
            raise
    return wrapper


def _make_classes() -> dict[str, type]:
    """Define the operator and application classes (they subclass Holoscan's, imported here)."""
    _holoscan()
    from holoscan.core import Application, Operator

    from llm4seg.runtime.segmenter import Segmenter, overlay
    from llm4seg.runtime.temporal import StreamQuality, smoother_from_text
    from llm4seg.runtime.video_sinks import open_sink
    from llm4seg.runtime.video_sources import open_source

    class FrameSourceOp(Operator):
        """Emits {"frame": BGR uint8, "index", "pts_s"} per frame of a video source (see
        `open_source`), then stops the graph at the end of the source."""

        def __init__(self, fragment: Any, *args: Any, source: Any = None, reader: str = "auto", **kwargs: Any) -> None:
            self.cap, self.live = open_source(source, reader)
            self.index, self.compute_ms = 0, []
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec: Any) -> None:
            spec.output("out")

        @_kept
        def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
            t0 = time.perf_counter()
            ok, image = self.cap.read()
            while ok and (image is None or image.size == 0):  # corrupt frame: skipped, as in VideoPipeline
                ok, image = self.cap.read()
            if not ok:
                self.stop_execution()
                return
            op_output.emit({"frame": image, "index": self.index, "pts_s": self.cap.last_pts_s}, "out")
            self.index += 1
            self.compute_ms.append((time.perf_counter() - t0) * 1000)

        @_kept
        def stop(self) -> None:
            self.cap.release()

    class SegmentOp(Operator):
        """Segments each received frame.

        Input port `in`: a BGR uint8 frame (H, W, 3), or a dict holding it under "frame" (other
        keys are passed on). Output port `out`: the dict with "mask" (uint8 0/1, the frame's size),
        "quality" (confidence, flags: runtime/temporal.py) and "overlay" (the frame with the mask
        drawn; dashed orange when the frame is flagged low_confidence) added. `stream.summary()`
        gives the run's flicker, confidence and flag counts.

        Args:
            artifact: an exported artifact (.onnx, .plan, .pt2) with its manifest; or
            segmenter: a Segmenter made by the caller (then it is not closed by this operator).
            overlay_mode: 'contour', 'fill', or None for no overlay.
            smooth: temporal smoothing of the probabilities (none, ema[:ALPHA], median[:WINDOW]).
            quality: measure each frame's quality and the stream's flicker (default on).
        """

        def __init__(self, fragment: Any, *args: Any, artifact: str | Path | None = None, segmenter: Any = None,
                     overlay_mode: str | None = "contour", smooth: str | None = None, quality: bool = True,
                     **kwargs: Any) -> None:
            if (artifact is None) == (segmenter is None):
                raise ConfigError("SegmentOp needs one of artifact= or segmenter=",
                                  hint="pass artifact='ART/model.onnx' (or a Segmenter)")
            self.owns = segmenter is None
            self.segmenter = Segmenter(artifact) if self.owns else segmenter
            self.overlay_mode, self.compute_ms = overlay_mode, []
            smoother = smoother_from_text(smooth)
            self.stream = (StreamQuality(self.segmenter.threshold, smoother, self.segmenter.low_confidence,
                                         self.segmenter.low_confidence_source) if quality or smoother else None)
            self.index = 0
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec: Any) -> None:
            spec.input("in")
            spec.output("out")

        @_kept
        def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
            message = op_input.receive("in")
            item = dict(message) if isinstance(message, dict) else {"frame": np.asarray(message)}
            t0 = time.perf_counter()
            if self.stream is None:
                item["mask"] = self.segmenter.segment_one(item["frame"])
            else:  # probabilities, smoothed in arrival order, then the mask and its quality
                prob = self.segmenter.segment_one(item["frame"], binary=False)
                item["mask"], item["quality"] = self.stream.step(item.get("index", self.index), prob, item["frame"])
            self.index += 1
            unsure = "low_confidence" in (item.get("quality") or {}).get("flags", ())
            if self.overlay_mode:
                item["overlay"] = overlay(item["frame"], item["mask"], self.overlay_mode, unsure=unsure)
            self.compute_ms.append((time.perf_counter() - t0) * 1000)
            op_output.emit(item, "out")

        @_kept
        def stop(self) -> None:
            if self.owns:
                self.segmenter.close()

    class VideoSinkOp(Operator):
        """Writes each received {"frame", "mask", ...} to a video file or GStreamer pipeline (see
        `open_sink`); keeps the masks in `masks` when `keep_masks` (for tests and small clips)."""

        def __init__(self, fragment: Any, *args: Any, out: str | None = None, fps: float = 25.0,
                     overlay_mode: str = "contour", keep_masks: bool = False, **kwargs: Any) -> None:
            self.sink = open_sink(out, fps, overlay_mode) if out else None
            self.keep_masks, self.masks, self.compute_ms = keep_masks, [], []
            super().__init__(fragment, *args, **kwargs)

        def setup(self, spec: Any) -> None:
            spec.input("in")

        @_kept
        def compute(self, op_input: Any, op_output: Any, context: Any) -> None:
            item = op_input.receive("in")
            t0 = time.perf_counter()
            if self.sink is not None:
                self.sink(_SinkFrame(item))
            if self.keep_masks:
                self.masks.append(item["mask"])
            self.compute_ms.append((time.perf_counter() - t0) * 1000)

        @_kept
        def stop(self) -> None:
            if self.sink is not None:
                self.sink.close()

    class SegmentApp(Application):
        """source -> segment -> sink, each operator's arguments from the YAML sections of the same
        names (`source`, `segment`, `sink`; `scheduler` picks greedy or multi_thread)."""

        def compose(self) -> None:
            source_args = dict(self.kwargs("source"))
            self.source_op = FrameSourceOp(self, name="source", **source_args)
            self.segment_op = SegmentOp(self, name="segment", **dict(self.kwargs("segment")))
            sink_args = dict(self.kwargs("sink"))
            sink_args.setdefault("fps", self.source_op.cap.fps or 25.0)
            self.sink_op = VideoSinkOp(self, name="sink", **sink_args)
            self.add_flow(self.source_op, self.segment_op)
            self.add_flow(self.segment_op, self.sink_op)

    return {"FrameSourceOp": FrameSourceOp, "SegmentOp": SegmentOp, "VideoSinkOp": VideoSinkOp,
            "SegmentApp": SegmentApp}


class _SinkFrame:
    """The attributes a video sink reads (image, mask, index, pts_s) from a SegmentOp message."""

    def __init__(self, item: dict) -> None:
        self.image, self.mask = item["frame"], item["mask"]
        self.index, self.pts_s = item.get("index", 0), item.get("pts_s")


def __getattr__(name: str) -> type:
    """SegmentOp, FrameSourceOp, VideoSinkOp and SegmentApp, made (and Holoscan imported) on first use."""
    if name in ("SegmentOp", "FrameSourceOp", "VideoSinkOp", "SegmentApp"):
        if not _CLASSES:
            _CLASSES.update(_make_classes())
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _scheduler(app: Any, kind: str) -> Any:
    from holoscan.schedulers import GreedyScheduler, MultiThreadScheduler

    if kind == "greedy":
        return GreedyScheduler(app, name="greedy")
    if kind == "multi_thread":
        return MultiThreadScheduler(app, name="multi_thread", worker_thread_number=3, stop_on_deadlock=True)
    raise ConfigError(f"scheduler {kind!r} is not known", hint="use greedy or multi_thread")


_TEXT, _NUMBER = (str,), (int, float)
APP_SCHEMA: dict[str, dict[str, tuple[bool, tuple[type, ...], tuple[Any, ...] | None]]] = {
    # section -> key -> (required, types, allowed values or None); sink and scheduler may be left out
    "source": {"source": (True, (str, int), None), "reader": (False, _TEXT, ("auto", "pyav", "opencv"))},
    "segment": {"artifact": (True, _TEXT, None), "overlay_mode": (False, (str, type(None)), ("contour", "fill", None)),
                "smooth": (False, (str, type(None)), None), "quality": (False, (bool,), None)},
    "sink": {"out": (False, (str, type(None)), None), "overlay_mode": (False, _TEXT, ("contour", "fill")),
             "fps": (False, _NUMBER, None), "keep_masks": (False, (bool,), None)},
    "scheduler": {"kind": (False, _TEXT, ("greedy", "multi_thread"))},
}
REQUIRED_SECTIONS = ("source", "segment")


def check_app_config(path: Path) -> dict[str, Any]:
    """The app YAML read safely and checked against APP_SCHEMA: a file that is not a mapping, an
    unknown section or key, a missing one, or a value of the wrong type or not allowed is a
    ConfigError naming the file, the section and the key (Holoscan itself ignores unknown keys)."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"Holoscan app config {path} cannot be read as YAML: {exc}",
                          hint=f"start from {EXAMPLE_CONFIG}") from None
    if not isinstance(config, dict):
        held = "nothing" if config is None else f"a {type(config).__name__}"
        raise ConfigError(f"Holoscan app config {path} holds {held}, not sections "
                          f"({', '.join(APP_SCHEMA)})", hint=f"start from {EXAMPLE_CONFIG}")
    for section in config:
        if section not in APP_SCHEMA:
            raise ConfigError(f"{path}: unknown section {section!r}", hint=f"sections: {', '.join(APP_SCHEMA)}")
    for section, keys in APP_SCHEMA.items():
        values = config.get(section)
        if values is None and section not in REQUIRED_SECTIONS:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} is {'missing' if values is None else repr(values)}; "
                              "expected a mapping", hint=f"start from {EXAMPLE_CONFIG}")
        for key, value in values.items():
            if key not in keys:
                raise ConfigError(f"{path}: unknown key {key!r} in section {section!r}",
                                  hint=f"{section} takes {', '.join(keys)}")
            _, types, allowed = keys[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types) or \
                    (allowed is not None and value not in allowed):
                expected = f"one of {allowed}" if allowed else " or ".join(t.__name__ for t in types)
                raise ConfigError(f"{path}: {section}.{key} is {value!r}; expected {expected}",
                                  hint=f"see {EXAMPLE_CONFIG}")
        for key, (required, _, _) in keys.items():
            if required and key not in values:
                raise ConfigError(f"{path}: section {section!r} lacks {key!r}", hint=f"see {EXAMPLE_CONFIG}")
    return config


def run_app(config: str | Path, overrides: dict[str, dict] | None = None) -> dict[str, Any]:
    """Run SegmentApp from a YAML file; returns the report (frames, per-operator compute latency,
    end-to-end latency per data-flow path from Holoscan's tracker, wall time, fps).

    Args:
        config: the application's YAML (sections source, segment, sink, scheduler).
        overrides: per-section values that replace the YAML's (e.g. {"sink": {"keep_masks": True}}).
    """
    config = Path(config)
    if not config.is_file():
        raise ConfigError(f"Holoscan app config {config} does not exist", hint=f"start from {EXAMPLE_CONFIG}")
    _holoscan()
    from holoscan.core import DataFlowMetric, Tracker

    checked = check_app_config(config)
    app = __getattr__("SegmentApp")()
    app.config(str(config))
    if overrides:
        app.kwargs = _with_overrides(app.kwargs, overrides)
    app.scheduler(_scheduler(app, str((checked.get("scheduler") or {}).get("kind", "greedy"))))
    start = time.perf_counter()
    flow_log = Path(tempfile.mkdtemp(prefix="llm4seg-holoscan-")) / "flow.log"
    # Skip nothing: a short clip would otherwise report no latency at all. The log has, per message,
    # each operator's receive and publish times: the per-operator latency below comes from it.
    with Tracker(app, filename=str(flow_log), num_start_messages_to_skip=0, num_last_messages_to_discard=0) as tracker:
        try:
            app.run()
        except Exception:
            if not _operator_errors(app):
                raise
        if _operator_errors(app):
            shutil.rmtree(flow_log.parent, ignore_errors=True)
            raise _operator_errors(app)[0]
        paths = {p: tracker.get_metric(p, DataFlowMetric.AVG_E2E_LATENCY) for p in tracker.get_path_strings()}
        max_ms = {p: tracker.get_metric(p, DataFlowMetric.MAX_E2E_LATENCY) for p in paths}
    wall_s = time.perf_counter() - start
    operator_ms = operator_latency_from_flow_log(flow_log)
    shutil.rmtree(flow_log.parent, ignore_errors=True)
    frames = len(app.sink_op.compute_ms)
    report = {"frames_out": frames, "wall_s": wall_s, "fps": frames / wall_s if wall_s else 0.0,
              "operator_compute_ms": {op.name: percentiles_ms(op.compute_ms)
                                      for op in (app.source_op, app.segment_op, app.sink_op)},
              "operator_latency_ms": {op: percentiles_ms(v) for op, v in operator_ms.items()},
              "e2e_latency_ms": {p: {"avg": paths[p], "max": max_ms[p]} for p in paths},
              "codec": getattr(app.sink_op.sink, "codec", None), "container": getattr(app.sink_op.sink, "container", None),
              "quality": app.segment_op.stream.summary() if app.segment_op.stream is not None else None}
    report["masks"] = app.sink_op.masks
    return report


def _operator_errors(app: Any) -> list[Exception]:
    """The exceptions the app's operators raised (kept by `_kept`), first one first."""
    ops = [getattr(app, name, None) for name in ("source_op", "segment_op", "sink_op")]
    return [exc for op in ops if op is not None for exc in op.__dict__.get("errors", [])]


_FLOW_HOP = re.compile(r"\((?P<op>[^,()]+),(?P<t_in>\d+),(?P<t_out>\d+)\)")


def operator_latency_from_flow_log(path: Path) -> dict[str, list[float]]:
    """{operator: [ms per message]} from a Holoscan data-flow tracking log, whose lines read
    `(source,t0,t1) -> (segment,t2,t3) -> ...` in microseconds: receive (or start) and publish."""
    latencies: dict[str, list[float]] = {}
    text = path.read_text() if path.is_file() else ""
    for hop in _FLOW_HOP.finditer(text):
        latencies.setdefault(hop["op"], []).append((int(hop["t_out"]) - int(hop["t_in"])) / 1000.0)
    return latencies


def _with_overrides(kwargs: Any, overrides: dict[str, dict]) -> Any:
    def merged(section: str) -> dict:
        return {**dict(kwargs(section)), **overrides.get(section, {})}
    return merged


def inference_op_config(manifest_path: str | Path, artifact: str) -> dict[str, Any]:
    """The configuration of Holoscan's FormatConverterOp + InferenceOp for one manifest artifact, on
    its any-size frames graph, for a GPU Holoscan app (NOT RUN here: those operators need CUDA).

    The frames graph (`model[.fp16|.int8].frames.onnx`; a float graph's own is found through the
    manifest) takes uint8 HWC frames of any size and does the colour order, the contract's resize,
    the normalisation and the resize back inside: FormatConverterOp only drops the alpha channel of
    an RGBA source and orders the channels (no resize, no scaling), and InferenceOp runs with
    dynamic input dimensions (Holoscan 4.6's inference libraries list kUInt8 among their data
types: read from the installed binaries, NOT RUN). Outputs:
    `prob` and `mask` (0/1) at the frame's size.

    Returns:
        {'format_converter': ..., 'inference': ..., 'llm4seg': what runs where, 'status'}; the two
        operator sections are the YAML sections a Holoscan app passes as `**self.kwargs(name)`.
    """
    manifest_path = Path(manifest_path)
    entries = json.loads(manifest_path.read_text()).get("artifacts", {})
    if artifact not in entries:
        raise ConfigError(f"{artifact!r} is not in {manifest_path}", hint=f"choose one of {', '.join(entries) or '(none)'}")
    name = _any_size_graph(entries, artifact)
    if name is None:
        raise ConfigError(f"{artifact} has no any-size frames graph in {manifest_path}",
                          hint="re-export with this llm4seg version (frames graphs are written unless --no-frames)")
    entry = entries[name]
    spec = entry["inputs"][0]
    order = [2, 1, 0] if spec["color"] == "BGR" else [0, 1, 2]  # FormatConverterOp's output is RGB
    return {
        "format_converter": {"in_dtype": "rgba8888", "out_dtype": "rgb888", "out_channel_order": order,
                             "out_tensor_name": spec["name"]},
        "inference": {"backend": "trt", "model_path_map": {"llm4seg": str(manifest_path.parent / name)},
                      "pre_processor_map": {"llm4seg": [spec["name"]]},
                      "inference_map": {"llm4seg": [o["name"] for o in entry["outputs"]]},
                      "dynamic_input_dims": True, "enable_fp16": entry.get("precision") == "fp16",
                      "input_on_cuda": True, "output_on_cuda": True, "transmit_on_cuda": True, "is_engine_path": False},
        "llm4seg": {"artifact": name, "source": entry["frames"].get("source"), "inside_the_graph": entry["frames"]["inside"],
                    "input": f"uint8 (H, W, 3) {spec['color']} frames of any size"},
        "status": "NOT RUN: generated from the manifest; FormatConverterOp and InferenceOp need a CUDA GPU",
    }


def _any_size_graph(entries: dict[str, Any], artifact: str) -> str | None:
    """`artifact` if it is an any-size frames graph, else the any-size frames graph made from it."""
    if (entries[artifact].get("frames") or {}).get("form") == "any-size":
        return artifact
    return next((n for n, e in entries.items() if (e.get("frames") or {}).get("form") == "any-size"
                 and e["frames"].get("source") == artifact), None)


def main(argv: list[str] | None = None) -> int:
    """`python -m llm4seg.runtime.holoscan APP.yaml [--json]`: run the app, print its report. A
    boundary like the CLI's: errors print `error:` and `hint:` (exit 1; tracebacks with
    LLM4SEG_DEBUG=1), Ctrl-C exits 130."""
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except Llm4SegError as exc:
        if os.environ.get("LLM4SEG_DEBUG"):
            raise
        print(f"error: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 1


def _main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m llm4seg.runtime.holoscan APP.yaml [--json]\nexample config: {EXAMPLE_CONFIG}")
        return 0 if args else 2
    report = run_app(args[0])
    report.pop("masks", None)
    if "--json" in args:
        print(json.dumps(report, indent=1, default=float))
        return 0
    print(f"{report['frames_out']} frames in {report['wall_s']:.1f} s = {report['fps']:.1f} fps "
          f"({report['codec']} in {report['container']})")
    for name, lat in report["operator_latency_ms"].items():
        if lat.get("n"):
            print(f"  {name:>8}: p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms (Holoscan data-flow tracking)")
    for path, lat in report["e2e_latency_ms"].items():
        print(f"  {path}: end-to-end avg {lat['avg']:.1f} ms, max {lat['max']:.1f} ms (Holoscan data-flow tracking)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
