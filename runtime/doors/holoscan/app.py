"""Running the Holoscan example application from YAML, and reading Holoscan's latency records.

    python -m llm4seg.runtime.doors.holoscan app.yaml [--json]

`run_app` checks the YAML against `APP_SCHEMA` (Holoscan itself ignores unknown keys), wires
SegmentApp (operators.py), runs it under data-flow tracking and returns the report: frames,
per-operator latency, end-to-end latency, the stream's quality. Holoscan is imported inside.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llm4seg.errors import ConfigError, Llm4SegError
from llm4seg.runtime.core.stats import percentiles_ms
from llm4seg.runtime.doors.holoscan.sdk import holoscan_module

EXAMPLE_CONFIG = Path(__file__).with_name("segment_app.yaml")


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
                "smooth": (False, (str, type(None)), None)},
    "sink": {"out": (False, (str, type(None)), None), "overlay_mode": (False, _TEXT, ("contour", "fill")),
             "fps": (False, _NUMBER, None), "keep_results": (False, (bool,), None)},
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
        overrides: per-section values that replace the YAML's (e.g. {"sink": {"keep_results": True}}).
    """
    config = Path(config)
    if not config.is_file():
        raise ConfigError(f"Holoscan app config {config} does not exist", hint=f"start from {EXAMPLE_CONFIG}")
    holoscan_module()
    from holoscan.core import DataFlowMetric, Tracker

    checked = check_app_config(config)
    from llm4seg.runtime.doors.holoscan.operators import SegmentApp

    app = SegmentApp()
    app.config(str(config))
    if overrides:
        app.kwargs = _with_overrides(app.kwargs, overrides)
    app.scheduler(_scheduler(app, str((checked.get("scheduler") or {}).get("kind", "greedy"))))
    start = time.perf_counter()
    flow_log = Path(tempfile.mkdtemp(prefix="llm4seg-holoscan-")) / "flow.log"
    try:
        paths, max_ms = _run_tracked(app, flow_log, Tracker, DataFlowMetric)
        operator_ms = operator_latency_from_flow_log(flow_log)
    finally:
        shutil.rmtree(flow_log.parent, ignore_errors=True)
    wall_s = time.perf_counter() - start
    frames = len(app.sink_op.compute_ms)
    report = {"frames_out": frames, "wall_s": wall_s, "fps": frames / wall_s if wall_s else 0.0,
              "operator_compute_ms": {op.name: percentiles_ms(op.compute_ms)
                                      for op in (app.source_op, app.segment_op, app.sink_op)},
              "operator_latency_ms": {op: percentiles_ms(v) for op, v in operator_ms.items()},
              "e2e_latency_ms": {p: {"avg": paths[p], "max": max_ms[p]} for p in paths},
              "codec": getattr(app.sink_op.sink, "codec", None), "container": getattr(app.sink_op.sink, "container", None),
              "quality": app.segment_op.stream.summary() if app.segment_op.stream is not None else None,
              "results": app.sink_op.results}
    return report


def _run_tracked(app: Any, flow_log: Path, tracker_cls: Any, metric: Any) -> tuple[dict, dict]:
    """Run the app under Holoscan's data-flow tracking; (avg, max) end-to-end latency per path.
    Skip nothing: a short clip would otherwise report no latency at all. The log has, per message,
    each operator's receive and publish times: the per-operator latency comes from it."""
    with tracker_cls(app, filename=str(flow_log), num_start_messages_to_skip=0, num_last_messages_to_discard=0) as tracker:
        try:
            app.run()
        except Exception:
            if not _operator_errors(app):
                raise
        if _operator_errors(app):
            raise _operator_errors(app)[0]
        paths = {p: tracker.get_metric(p, metric.AVG_E2E_LATENCY) for p in tracker.get_path_strings()}
        return paths, {p: tracker.get_metric(p, metric.MAX_E2E_LATENCY) for p in paths}


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



def main(argv: list[str] | None = None) -> int:
    """`python -m llm4seg.runtime.doors.holoscan APP.yaml [--json]`: run the app, print its report. A
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
        print(f"usage: python -m llm4seg.runtime.doors.holoscan APP.yaml [--json]\nexample config: {EXAMPLE_CONFIG}")
        return 0 if args else 2
    report = run_app(args[0])
    report.pop("results", None)
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


__all__ = ["APP_SCHEMA", "EXAMPLE_CONFIG", "check_app_config", "main", "operator_latency_from_flow_log", "run_app"]
