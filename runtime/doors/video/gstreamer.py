"""GStreamer in and out of the video pipeline: `gst:<pipeline>` as a source (frames from an
appsink, negotiated to BGR) and as a sink (frames pushed into an appsrc).

Errors and end-of-stream on the pipeline's bus are polled between frames, so a failing element
surfaces as a ConfigError naming it within about `POLL_S`; a source that delivers no frame for
`frame_timeout_s` is an error too (nothing waits forever). GStreamer comes from the system
(Debian: python3-gi gir1.2-gstreamer-1.0 and the plugin packages); see `_optional`.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.runtime.doors.video.sink_base import ResizingSink

POLL_S = 0.1
SINK_NAME, SOURCE_NAME = "llm4seg_sink", "llm4seg_src"
_APPSINK_TAIL = re.compile(r"!\s*appsink\b(?P<props>[^!]*)$")
_NAME_PROP = re.compile(r"\bname\s*=\s*\S+")


def _gst() -> Any:
    """Gst, initialised; a clear error naming the packages where GStreamer cannot be imported."""
    from llm4seg._optional import require

    gi = require("gi", "GStreamer pipelines")
    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        from gi.repository import Gst, GstApp  # noqa: F401  (GstApp gives appsink/appsrc their methods)
    except (ValueError, ImportError) as exc:
        from llm4seg._optional import system_hint

        raise ConfigError(f"GStreamer's Python bindings cannot be loaded ({exc})", hint=system_hint("gi")) from exc
    if not Gst.is_initialized():
        Gst.init(None)
    return Gst


def source_pipeline_text(text: str) -> str:
    """The user's source pipeline ending in our appsink, converted to BGR: a trailing appsink keeps
    its properties (but not its name); a pipeline without one gets it appended."""
    text = text.strip()
    match = _APPSINK_TAIL.search(text)
    head, props = (text[:match.start()], _NAME_PROP.sub("", match.group("props"))) if match else (text, "")
    return (f"{head.strip()} ! videoconvert ! video/x-raw,format=BGR ! appsink name={SINK_NAME} sync=false "
            f"max-buffers=4 {props.strip()}").strip()


def sink_pipeline_text(text: str) -> str:
    """The user's sink pipeline with our name on its leading appsrc, or `appsrc ! videoconvert !` put
    in front of a pipeline that does not start with one."""
    text = text.strip()
    if not re.match(r"appsrc\b", text):
        return f"appsrc name={SOURCE_NAME} ! videoconvert ! {text}"
    first, sep, rest = text.partition("!")
    return f"{_NAME_PROP.sub('', first).strip()} name={SOURCE_NAME} {sep}{rest}"


def _launch(Gst: Any, text: str, role: str) -> Any:
    from gi.repository import GLib

    try:
        return Gst.parse_launch(text)
    except GLib.Error as exc:
        raise ConfigError(f"the GStreamer {role} pipeline {text!r} cannot be built: {exc.message}",
                          hint="check element names (gst-inspect-1.0 ELEMENT) and properties; "
                          "plugins come from gstreamer1.0-plugins-{base,good,ugly,bad}") from exc


def _bus_problem(Gst: Any, pipeline: Any, role: str, timeout_s: float = 0.0) -> str | None:
    """'eos', an error text, or None: the next EOS/ERROR message on the bus, waiting up to `timeout_s`."""
    types = Gst.MessageType.ERROR | Gst.MessageType.EOS
    msg = pipeline.get_bus().timed_pop_filtered(int(timeout_s * Gst.SECOND), types)
    if msg is None:
        return None
    if msg.type == Gst.MessageType.EOS:
        return "eos"
    err, debug = msg.parse_error()
    where = msg.src.get_name() if msg.src else "?"
    lines = (debug or "").splitlines()
    detail = next((line.strip() for line in lines if "reason" in line), lines[0] if lines else "")  # not-negotiated ...
    return f"GStreamer {role} element '{where}' failed: {err.message}" + (f" ({detail})" if detail else "")


def _raise(problem: str) -> None:
    raise ConfigError(problem, hint="check the pipeline with gst-launch-1.0 -v PIPELINE; GST_DEBUG=3 prints more")


class GstSource:
    """Frames from a GStreamer pipeline, negotiated to BGR, with each buffer's timestamp.

    Opening waits for the first frame (at most `frame_timeout_s`) so size, frame rate and errors
    are known at once. A live source (its PAUSED state has no preroll) drops the oldest frames in
    the pipeline's queue like a camera; a file source is read at the pipeline's pace."""

    reader = "gstreamer"

    def __init__(self, text: str, frame_timeout_s: float = 10.0) -> None:
        self.Gst = _gst()
        self.text, self.frame_timeout_s = source_pipeline_text(text), frame_timeout_s
        # release() may come from another thread while read() waits: it says stop, then takes the
        # lock read() holds, so the pipeline is never torn down under a pull (a stalled source gave
        # GStreamer-CRITICAL lines and a segfault at exit).
        self._closed, self._lock = False, threading.Lock()
        self.pipeline = _launch(self.Gst, self.text, "source")
        try:
            self._start(text)
        except BaseException:
            self.release()
            raise

    def _start(self, text: str) -> None:
        Gst = self.Gst
        self.appsink = self.pipeline.get_by_name(SINK_NAME)
        paused = self.pipeline.set_state(Gst.State.PAUSED)
        self.live = paused == Gst.StateChangeReturn.NO_PREROLL
        if self.live:  # never hold a camera back: the appsink drops its oldest buffer when full
            self.appsink.set_property("drop", True)
        self.frame_count, self.fps, self.last_pts_s = 0, 0.0, None
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE or \
                paused == Gst.StateChangeReturn.FAILURE:
            _raise(_bus_problem(Gst, self.pipeline, "source", 1.0) or f"the pipeline {self.text!r} does not start")
        with self._lock:
            self._first = self._pull()
        if self._first is None:
            raise ConfigError(f"the GStreamer source {text!r} ended before its first frame",
                              hint="check the source (file, device or URL) with gst-launch-1.0")
        ok, num, den = self._first.get_caps().get_structure(0).get_fraction("framerate")
        self.fps = num / den if ok and num and den else 0.0

    def _pull(self) -> Any:
        """The next sample, None at end of stream; raises on a bus error or after frame_timeout_s."""
        Gst, waited = self.Gst, 0.0
        while True:
            if self._closed:
                return None
            sample = self.appsink.try_pull_sample(int(POLL_S * Gst.SECOND))
            if sample is not None:
                return sample
            problem = _bus_problem(Gst, self.pipeline, "source")
            if problem == "eos" or self.appsink.is_eos():
                return None
            if problem:
                _raise(problem)
            waited += POLL_S
            if waited >= self.frame_timeout_s:
                _raise(f"the GStreamer source gave no frame for {self.frame_timeout_s:g} s")

    def _image(self, sample: Any) -> np.ndarray:
        structure = sample.get_caps().get_structure(0)
        w, h = structure.get_value("width"), structure.get_value("height")
        buf = sample.get_buffer()
        self.last_pts_s = None if buf.pts == self.Gst.CLOCK_TIME_NONE else buf.pts / self.Gst.SECOND
        ok, info = buf.map(self.Gst.MapFlags.READ)
        if not ok:
            return np.empty((0, 0, 3), np.uint8)
        try:
            # Rows are padded to 4 bytes in GStreamer's BGR layout: stride from the buffer size.
            rows = np.frombuffer(info.data, np.uint8, count=(info.size // h) * h).reshape(h, -1)
            return rows[:, : w * 3].reshape(h, w, 3).copy()
        finally:
            buf.unmap(info)

    def read(self) -> tuple[bool, np.ndarray | None]:
        """(True, BGR frame) for the next frame, (False, None) at end of stream; raises on a bus error."""
        with self._lock:
            sample, self._first = (self._first, None) if self._first is not None else (self._pull(), None)
            if sample is None:
                return False, None
            return True, self._image(sample)

    def release(self, wait_s: float = 2.0) -> None:
        """Stop the pipeline (state NULL), once a read() in progress has seen the stop (it looks
        every POLL_S); safe from any thread, and more than once."""
        self._closed = True
        locked = self._lock.acquire(timeout=wait_s)
        try:
            self.pipeline.set_state(self.Gst.State.NULL)
        finally:
            if locked:
                self._lock.release()


class GstSink(ResizingSink):
    """Overlaid frames pushed into a GStreamer pipeline's appsrc (e.g. 'appsrc ! videoconvert !
    x264enc ! mp4mux ! filesink location=seg.mp4'). Caps (BGR, size, frame rate) are set from the
    first frame; close() sends end-of-stream and waits for the pipeline to finish writing."""

    def __init__(self, text: str, fps: float, mode: str = "contour", eos_timeout_s: float = 30.0) -> None:
        super().__init__(fps, mode)
        self.Gst = _gst()
        self.text, self.eos_timeout_s = sink_pipeline_text(text), eos_timeout_s
        self.pipeline = _launch(self.Gst, self.text, "sink")
        self.appsrc = self.pipeline.get_by_name(SOURCE_NAME)
        self.codec, self.container = self._element_of("Encoder"), self._element_of("Muxer")
        self.caps_text: str | None = None
        self.failed: str | None = None  # the bus error that stopped it: close() then waits for nothing

    def _element_of(self, klass: str) -> str | None:
        """The factory name of the first element whose class names `klass` (x264enc, mp4mux)."""
        it, names = self.pipeline.iterate_elements(), []
        while True:
            ok, element = it.next()
            if ok != self.Gst.IteratorResult.OK:
                break
            factory = element.get_factory()
            if factory and klass in (factory.get_metadata("klass") or ""):
                names.append(factory.get_name())
        return names[-1] if names else None

    def _open(self, w: int, h: int) -> None:
        Gst = self.Gst
        num, den = (int(round(self.fps * 1000)), 1000) if self.fps else (25, 1)
        self.caps_text = f"video/x-raw,format=BGR,width={w},height={h},framerate={num}/{den}"
        caps = Gst.Caps.from_string(self.caps_text)
        self.appsrc.set_property("caps", caps)
        self.appsrc.set_property("format", Gst.Format.TIME)
        self.appsrc.set_property("block", True)
        self.appsrc.set_property("max-bytes", 8 * w * h * 3)
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            _raise(_bus_problem(Gst, self.pipeline, "sink", 1.0) or f"the pipeline {self.text!r} does not start")

    def __call__(self, frame: Any) -> None:
        Gst = self.Gst
        image = np.ascontiguousarray(self._frame_image(frame))
        buf = Gst.Buffer.new_wrapped(image.tobytes())
        step_s = 1.0 / (self.fps or 25.0)
        pts_s = frame.pts_s if getattr(frame, "pts_s", None) is not None else frame.index * step_s
        buf.pts, buf.duration = int(pts_s * Gst.SECOND), int(step_s * Gst.SECOND)
        flow = self.appsrc.emit("push-buffer", buf)
        problem = _bus_problem(Gst, self.pipeline, "sink")
        if problem and problem != "eos":
            self._fail(problem)
        if flow != Gst.FlowReturn.OK:
            self._fail(f"the GStreamer sink refused frame {frame.index} ({flow.value_nick})")
        self.written += 1

    def _fail(self, problem: str) -> None:
        """Raise the sink's error (naming the caps it was offered when they were refused) and
        remember it, so close() does not wait for an end-of-stream that cannot come."""
        self.failed = problem
        if "not-negotiated" in problem or "not negotiated" in problem:
            raise ConfigError(f"{problem}: the sink pipeline {self.text!r} does not accept the frames' caps "
                              f"{self.caps_text}",
                              hint="put videoconvert (and videoscale) after appsrc, or change the caps filter to "
                                   "one videoconvert can reach from BGR")
        _raise(problem)

    def close(self) -> None:
        """Send end-of-stream, wait for the pipeline to finish writing (raise on its error), stop it."""
        Gst = self.Gst
        try:
            if self.size_wh is not None and self.failed is None:
                self.appsrc.emit("end-of-stream")
                problem = _bus_problem(Gst, self.pipeline, "sink", self.eos_timeout_s)
                if problem is None:
                    _raise(f"the GStreamer sink did not finish within {self.eos_timeout_s:.0f} s of end-of-stream")
                if problem != "eos":
                    self._fail(problem)
        finally:
            self.pipeline.set_state(Gst.State.NULL)
