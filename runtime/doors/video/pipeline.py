"""A video pipeline: source -> Segmenter -> sink, with decode, inference and encode overlapped.

Three threads joined by bounded queues. Files are never dropped from (back-pressure); live
sources (camera index, stream URL) drop the oldest queued frame rather than build latency.
A frame that fails to decode mid-stream is reported and skipped; a source that stops early
ends the run cleanly with the reason recorded. Ctrl-C stops all stages and flushes the sink.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.mask_stage import FrameResult
from llm4seg.runtime.core.segmenter import Segmenter
from llm4seg.runtime.core.stats import percentiles_ms
from llm4seg.runtime.doors.video.sinks import PyAVSink, VideoWriterSink, open_sink
from llm4seg.runtime.doors.video.sources import mp4_without_frames, open_source
from llm4seg.smoothing import Smoother

__all__ = ["Frame", "PyAVSink", "RunReport", "VideoPipeline", "VideoWriterSink", "mp4_without_frames", "open_sink",
           "open_source"]

_END = object()


@dataclass
class Frame:
    """One frame through the pipeline: its index, BGR image, the source's timestamp (`pts_s`, None
    when the reader has none), decode time, and after inference its mask stage's `result`."""

    index: int
    image: np.ndarray
    t_decoded: float
    decode_ms: float
    result: FrameResult | None = None
    infer_ms: float = 0.0
    pts_s: float | None = None

    @property
    def mask(self) -> np.ndarray | None:
        """uint8 0/1 at the frame's size (cropped to the tissue region), once segmented."""
        return None if self.result is None else self.result.mask

    @property
    def unsure(self) -> bool:
        """Whether the mask stage flagged the frame low_confidence (the overlay shows it)."""
        return self.result is not None and "low_confidence" in self.result.flags


@dataclass
class RunReport:
    """What a run did: frames read/written/dropped/corrupt, events, wall time and per-stage latency."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    skipped_corrupt: int = 0
    events: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {"decode": [], "infer": [], "encode": [], "end_to_end": []})
    unreadable: list[int] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)  # per frame: index, pts_s and the mask stage's record
    stream: Any = None  # the run's SegmentStream (flicker, confidence, flags, areas)
    physical: dict[str, Any] | None = None  # a DICOM source's pixel size, regions and conversion

    def summary(self) -> dict[str, Any]:
        """The report as JSON-ready values, with fps and p50/p90/p99 per stage, and `quality`:
        flicker, confidence, flag counts, flagged frames and (with a pixel size) area in mm^2."""
        out = {"frames_in": self.frames_in, "frames_out": self.frames_out, "dropped": self.dropped,
               "skipped_corrupt": self.skipped_corrupt, "events": self.events, "wall_s": self.wall_s,
               "fps": self.frames_out / self.wall_s if self.wall_s else 0.0,
               "latency_ms": {k: percentiles_ms(v) for k, v in self.stage_ms.items()}}
        quality = self.stream.summary() if self.stream is not None else None
        if self.physical is not None:
            out["physical"] = {**self.physical, "area_mm2": quality["area_mm2"] if quality else None}
        if quality is not None:
            out["quality"] = quality
        return out


class VideoPipeline:
    """source -> frame runner + mask stage -> sink on three threads joined by bounded queues.

    Args:
        segmenter: a Segmenter (its runner, and a stream of its mask stage for this run).
        source: see `open_source`: a file, camera index, stream URL, 'gst:<pipeline>', a DICOM
            file or series folder, or a cv2.VideoCapture-like object.
        sink: a callable taking each Frame in order (e.g. `open_sink(...)`); its close(), if any,
            is called once at the end, also after an error or Ctrl-C.
        queue_size: frames held between stages.
        batch: frames per inference call (at most; fewer when the queue holds fewer).
        live: drop the oldest queued frame instead of waiting (default: detected from the source).
        reader: 'auto', 'pyav' or 'opencv' for files and URLs.
        smooth: a Smoother for this stream's probabilities (opt-in).
        stop: an Event that ends the run when set (a time budget, another thread); default: its own.

    The source's geometry (a DICOM file's tissue region and pixel size) goes to the mask stage.
    `run()` blocks until the source ends, a stage fails (the error is raised within about a
    second) or Ctrl-C, and returns the RunReport. A pipeline runs once.
    """

    def __init__(self, segmenter: Segmenter, source: Any, sink: Callable[[Frame], None],
                 queue_size: int = 8, batch: int = 1, live: bool | None = None, reader: str = "auto",
                 smooth: Smoother | None = None, stop: threading.Event | None = None) -> None:
        if not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"batch {batch!r} must be an integer of at least 1 (frames per inference call)",
                              hint="e.g. --batch 4")
        self.segmenter, self.source, self.sink, self.batch = segmenter, source, sink, batch
        self.cap, detected_live = open_source(source, reader)
        self.live = detected_live if live is None else live
        self.fps = self.cap.fps or 25.0
        self.expected_frames = self.cap.frame_count
        self.decoded: queue.Queue = queue.Queue(queue_size)
        self.segmented: queue.Queue = queue.Queue(queue_size)
        self.stop = stop if stop is not None else threading.Event()
        self.report = RunReport()
        self.stream = segmenter.stream(smooth, region=getattr(self.cap, "geometry", None))
        self.report.stream = self.stream
        self.report.physical = self.cap.physical() if hasattr(self.cap, "physical") else None
        self.errors: list[BaseException] = []
        self.interrupted = False

    # -- stages ----------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item: Any, may_drop: bool) -> None:
        """Queue `item`; a live source (`may_drop`) never waits: the oldest queued frame makes room."""
        while not self.stop.is_set():
            try:
                if may_drop:
                    q.put_nowait(item)
                else:
                    q.put(item, timeout=0.1)
                return
            except queue.Full:
                if may_drop:
                    try:
                        q.get_nowait()  # live: the oldest frame is the least useful
                        self.report.dropped += 1
                    except queue.Empty:
                        pass

    def _decode(self) -> None:
        index, misses = 0, 0
        while not self.stop.is_set():
            t0 = time.perf_counter()
            ok, image = self.cap.read()
            if not ok or image is None:
                if self.live and misses < 3:
                    misses += 1
                    continue
                if self.expected_frames and index < self.expected_frames:
                    self.report.events.append(f"source stopped at frame {index} of {self.expected_frames}")
                break
            misses = 0
            readable = image.ndim in (2, 3) and image.size > 0
            if readable:
                self.report.frames_in += 1
            else:  # recorded by the mask stage in frame order (flagged unreadable), never written
                self.report.skipped_corrupt += 1
                self.report.unreadable.append(index)
                self.report.events.append(f"frame {index} was unreadable (corrupt) and skipped")
            frame = Frame(index, image if readable else None, time.perf_counter(), (time.perf_counter() - t0) * 1000,
                          pts_s=self.cap.last_pts_s)
            self._put(self.decoded, frame, self.live and readable)
            index += 1
        self._put(self.decoded, _END, False)

    def _get(self, q: queue.Queue) -> Any:
        """Next item, or _END once the pipeline is stopping: a stage never waits on a dead neighbour."""
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue
        return _END

    def _infer(self) -> None:
        done = False
        while not done and not self.stop.is_set():
            frames = []
            item = self._get(self.decoded)
            while item is not _END:
                frames.append(item)
                if len(frames) >= self.batch:
                    break
                try:
                    item = self.decoded.get_nowait()
                except queue.Empty:
                    break
            done = item is _END
            if frames:
                self._segment(frames)
        self._put(self.segmented, _END, False)

    def _segment(self, frames: list[Frame]) -> None:
        """One inference call for the readable frames, then the stream's mask stage in frame order."""
        t0 = time.perf_counter()
        readable = [f for f in frames if f.image is not None]
        results = iter(self.stream.process([f.image for f in readable], [f.index for f in readable]) if readable else [])
        for f in frames:
            f.result = next(results) if f.image is not None else self.stream.unreadable(f.index)
            self.report.frames.append({"index": f.index, "pts_s": f.pts_s, **f.result.record()})
        per_frame = (time.perf_counter() - t0) * 1000 / max(1, len(readable))
        for f in frames:
            f.infer_ms = per_frame
            self._put(self.segmented, f, False)

    def _encode(self) -> None:
        while not self.stop.is_set():
            item = self._get(self.segmented)
            if item is _END:
                return
            r = self.report
            if item.image is None:
                continue
            t0 = time.perf_counter()
            self.sink(item)
            r.stage_ms["decode"].append(item.decode_ms)
            r.stage_ms["infer"].append(item.infer_ms)
            r.stage_ms["encode"].append((time.perf_counter() - t0) * 1000)
            # From decode to written: for file sources this includes time waiting in the queues.
            r.stage_ms["end_to_end"].append((time.perf_counter() - item.t_decoded) * 1000)
            r.frames_out += 1

    # -- run -------------------------------------------------------------------------------
    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # a stage error stops the whole pipeline, reported once
                self.errors.append(exc)
                self.report.events.append(f"{fn.__name__.strip('_')} stage failed: {exc}")
                self.stop.set()
        return run

    def _close_sink(self) -> None:
        """Close the sink; when a stage already failed, its error stays the one raised (a sink
        that fails to close after it is kept in the report's events, not raised over it)."""
        close = getattr(self.sink, "close", None)
        if not close:
            return
        try:
            close()
        except Exception as exc:
            if not self.errors:
                raise
            self.report.events.append(f"the sink failed to close after the run's error: {exc}")

    def run(self) -> RunReport:
        """Run to the end of the source; returns the report, raises the first stage error."""
        start = time.perf_counter()
        threads = [threading.Thread(target=self._guard(f), name=f.__name__, daemon=True)
                   for f in (self._decode, self._infer, self._encode)]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads) and not self.stop.is_set():
                for t in threads:
                    t.join(timeout=0.05)
        except KeyboardInterrupt:
            self.report.events.append("interrupted (Ctrl-C): stopping")
            self.interrupted = True
            self.stop.set()
        finally:
            # A stage blocked in a slow source's read() cannot be interrupted: give every stage a
            # second to see `stop`, then return (the threads are daemons) so an error surfaces now.
            deadline = time.perf_counter() + 1.0
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.perf_counter()))
            self.cap.release()
            self._close_sink()
            self.report.wall_s = time.perf_counter() - start
            resized = getattr(self.sink, "resized", 0)
            if resized:
                self.report.events.append(f"{resized} frame(s) had another size than the first and were resized to it")
        if self.errors and not isinstance(self.errors[0], KeyboardInterrupt):
            raise self.errors[0]
        return self.report
