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
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.fileio import stderr_fd_captured
from llm4seg.runtime.segmenter import Segmenter, overlay
from llm4seg.runtime.stats import percentiles_ms

_END = object()


@dataclass
class Frame:
    index: int
    image: np.ndarray
    t_decoded: float
    decode_ms: float
    mask: np.ndarray | None = None
    infer_ms: float = 0.0


@dataclass
class RunReport:
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    skipped_corrupt: int = 0
    events: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    stage_ms: dict[str, list[float]] = field(default_factory=lambda: {"decode": [], "infer": [], "encode": [], "end_to_end": []})

    def summary(self) -> dict[str, Any]:
        return {"frames_in": self.frames_in, "frames_out": self.frames_out, "dropped": self.dropped,
                "skipped_corrupt": self.skipped_corrupt, "events": self.events, "wall_s": self.wall_s,
                "fps": self.frames_out / self.wall_s if self.wall_s else 0.0,
                "latency_ms": {k: percentiles_ms(v) for k, v in self.stage_ms.items()}}


def open_source(source: Any) -> tuple[Any, bool]:
    """(capture, is_live). An int or digit string is a camera; '://' a stream; else a file. An object
    with read() and release() (like cv2.VideoCapture) is used as it is, as a file-like source."""
    if hasattr(source, "read") and hasattr(source, "release"):
        return source, False
    camera = isinstance(source, int) or str(source).isdigit()
    live = camera or "://" in str(source)
    if not live and not Path(str(source)).is_file():
        raise ConfigError(f"video source {source!r} does not exist", hint="pass a video file, a camera index or a stream URL")
    cap = cv2.VideoCapture(int(source) if camera else str(source))
    if not cap.isOpened():
        if camera:
            raise ConfigError(f"camera {source} cannot be opened",
                              hint="check that the camera is connected and not in use, and the index (0 is the first)")
        if not live and mp4_without_frames(Path(str(source))):
            raise ConfigError(f"the video {source!r} is a valid MP4 file with no frames in it",
                              hint="check the recording (it stopped before its first frame) or pass another file")
        raise ConfigError(f"OpenCV cannot open the video source {source!r}",
                          hint="check the path/URL and that OpenCV was built with the needed codec (FFmpeg)")
    return cap, live


def mp4_without_frames(path: Path) -> bool:
    """True for an MP4/MOV file whose top-level boxes hold a movie header (moov) but no media data
    (every mdat empty): a recording stopped before its first frame, which OpenCV cannot open."""
    try:
        data = path.read_bytes()[: 1 << 20]
    except OSError:
        return False
    boxes, i = {}, 0
    while i + 8 <= len(data):
        size, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        if size < 8:
            break
        boxes[kind] = max(boxes.get(kind, 0), size - 8)
        i += size
    return b"ftyp" in boxes and b"moov" in boxes and boxes.get(b"mdat", 0) == 0


def _quiet_writer(path: Path, code: str, fps: float, size_wh: tuple[int, int]) -> cv2.VideoWriter:
    """Open a writer without OpenCV's or FFmpeg's error lines when a codec is missing (we fall back and say so)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    previous = logging.getLogLevel() if logging else None
    if logging:
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        # FFmpeg's own lines ("h264_v4l2m2m ... Could not find a valid device") go to fd 2 directly.
        with stderr_fd_captured():
            return cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*code), fps, size_wh)
    finally:
        if logging:
            logging.setLogLevel(previous)


class VideoWriterSink:
    """Writes overlaid frames to a video file (mp4v by default).

    A video file has one frame size: frames of another size (a source that changes resolution
    mid-stream) are resized to the first frame's size and counted in `resized`, because OpenCV's
    writer would otherwise drop them without a word."""

    def __init__(self, path: Path | str, fps: float, mode: str = "contour", fourcc: str | None = None) -> None:
        # H.264 (avc1) where this OpenCV/FFmpeg build can write it, else MPEG-4 Part 2 (mp4v);
        # `codec` says which one was used.
        self.path, self.fps, self.mode = Path(path), fps, mode
        self.fourccs = [fourcc] if fourcc else ["avc1", "mp4v"]
        self.codec: str | None = None
        self.writer: cv2.VideoWriter | None = None
        self.size_wh: tuple[int, int] | None = None
        self.written = 0
        self.resized = 0

    def __call__(self, frame: Frame) -> None:
        image = overlay(frame.image, frame.mask, self.mode)
        if self.writer is None:
            h, w = image.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = self._open(w, h)
            self.size_wh = (w, h)
        if (image.shape[1], image.shape[0]) != self.size_wh:
            image = cv2.resize(image, self.size_wh, interpolation=cv2.INTER_AREA)
            self.resized += 1
        self.writer.write(image)
        self.written += 1

    def _open(self, w: int, h: int) -> cv2.VideoWriter:
        for code in self.fourccs:
            writer = _quiet_writer(self.path, code, self.fps, (w, h))
            if writer.isOpened():
                self.codec = code
                return writer
            writer.release()
        raise ConfigError(f"cannot write video {self.path} with {' or '.join(self.fourccs)}",
                          hint="use a .mp4 or .avi path in a writable folder")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


class VideoPipeline:
    def __init__(self, segmenter: Segmenter, source: str | int, sink: Callable[[Frame], None],
                 queue_size: int = 8, batch: int = 1, live: bool | None = None) -> None:
        self.segmenter, self.source, self.sink, self.batch = segmenter, source, sink, max(1, batch)
        self.cap, detected_live = open_source(source)
        self.live = detected_live if live is None else live
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.expected_frames = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.decoded: queue.Queue = queue.Queue(queue_size)
        self.segmented: queue.Queue = queue.Queue(queue_size)
        self.stop = threading.Event()
        self.report = RunReport()
        self.errors: list[BaseException] = []
        self.interrupted = False

    # -- stages ----------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item: Any, may_drop: bool) -> None:
        while not self.stop.is_set():
            try:
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
            if image.ndim not in (2, 3) or image.size == 0:
                self.report.skipped_corrupt += 1
                self.report.events.append(f"frame {index} was corrupt and skipped")
                index += 1
                continue
            self.report.frames_in += 1
            self._put(self.decoded, Frame(index, image, time.perf_counter(), (time.perf_counter() - t0) * 1000), self.live)
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
                t0 = time.perf_counter()
                masks = self.segmenter.segment([f.image for f in frames])
                per_frame = (time.perf_counter() - t0) * 1000 / len(frames)
                for f, m in zip(frames, masks):
                    f.mask, f.infer_ms = m, per_frame
                    self._put(self.segmented, f, False)
        self._put(self.segmented, _END, False)

    def _encode(self) -> None:
        while not self.stop.is_set():
            item = self._get(self.segmented)
            if item is _END:
                return
            t0 = time.perf_counter()
            self.sink(item)
            r = self.report
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

    def run(self) -> RunReport:
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
            close = getattr(self.sink, "close", None)
            if close:
                close()
            self.report.wall_s = time.perf_counter() - start
            resized = getattr(self.sink, "resized", 0)
            if resized:
                self.report.events.append(f"{resized} frame(s) had another size than the first and were resized to it")
        if self.errors and not isinstance(self.errors[0], KeyboardInterrupt):
            raise self.errors[0]
        return self.report
