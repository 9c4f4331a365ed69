"""Video sinks: overlaid frames to an H.264 file (PyAV), an OpenCV writer, or a GStreamer pipeline.

A sink is a callable taking the pipeline's Frame (image, mask, index, pts_s), with close(), and
the attributes `codec`, `container` (what was written, None before the first frame), `written`
and `resized`. `open_sink` picks one from the output's name.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.fileio import stderr_fd_captured
from llm4seg.runtime.doors.video.sink_base import ResizingSink
from llm4seg.runtime.doors.video.sources import GST_PREFIX, pyav_available, rate_from_fps

WRITERS = ("auto", "pyav", "opencv")
# Container -> PyAV encoder: H.264 where the container carries it, VP9 in WebM.
ENCODER_FOR_SUFFIX = {".webm": "libvpx-vp9"}
# Ticks per second of the written timestamps (MPEG's 90 kHz clock): exact for 25, 30 and 29.97 fps.
PTS_HZ = 90000
# Containers with one frame rate and no per-frame timestamps: their clock is the frame rate.
CONSTANT_RATE_SUFFIXES = (".avi",)


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


class VideoWriterSink(ResizingSink):
    """Writes overlaid frames with OpenCV's writer: H.264 (avc1) where this OpenCV build can, else
    MPEG-4 Part 2 (mp4v); `codec` says which. The fallback when PyAV is not installed."""

    def __init__(self, path: Path | str, fps: float, mode: str = "contour", fourcc: str | None = None) -> None:
        super().__init__(fps, mode)
        self.path = Path(path)
        self.fourccs = [fourcc] if fourcc else ["avc1", "mp4v"]
        self.writer: cv2.VideoWriter | None = None

    def __call__(self, frame: Any) -> None:
        image = self._frame_image(frame)
        self.writer.write(image)
        self.written += 1

    def _open(self, w: int, h: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for code in self.fourccs:
            writer = _quiet_writer(self.path, code, self.fps or 25.0, (w, h))
            if writer.isOpened():
                self.writer, self.codec, self.container = writer, code, self.path.suffix.lstrip(".")
                return
            writer.release()
        raise ConfigError(f"cannot write video {self.path} with {' or '.join(self.fourccs)}",
                          hint="use a .mp4 or .avi path in a writable folder")

    def close(self) -> None:
        """Finish the file (no-op when nothing was written)."""
        if self.writer is not None:
            self.writer.release()


class PyAVSink(ResizingSink):
    """Writes overlaid frames as H.264 (libx264, yuv420p; VP9 for .webm) with PyAV, keeping the
    source's frame rate and, where the source has them, its timestamps.

    H.264 in 4:2:0 needs even sides: an odd width or height is padded by one edge pixel (the
    decoded frame then has the padded size)."""

    def __init__(self, path: Path | str, fps: float, mode: str = "contour", encoder: str | None = None,
                 options: dict[str, str] | None = None) -> None:
        super().__init__(fps, mode)
        self.path = Path(path)
        self.encoder = encoder or ENCODER_FOR_SUFFIX.get(self.path.suffix.lower(), "libx264")
        self.options = options if options is not None else {"preset": "veryfast", "crf": "20"}
        self.out: Any = None
        self.stream: Any = None
        self._last_pts = -1
        self.padded = False
        self.tick = Fraction(1, PTS_HZ)

    def _open(self, w: int, h: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.out = av.open(str(self.path), "w")
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"cannot write video {self.path}: {exc}",
                              hint="use a .mp4, .mkv, .mov or .webm path in a writable folder") from exc
        self.stream = self.out.add_stream(self.encoder, rate=rate_from_fps(self.fps))
        self.stream.width, self.stream.height = w + w % 2, h + h % 2
        self.padded = (w % 2, h % 2) != (0, 0)
        self.stream.pix_fmt = "yuv420p"
        # The encoder's clock too: at its default 1/fps, timestamps closer than a frame (a variable-rate
        # source) would round onto each other and the muxer would refuse them.
        rate = rate_from_fps(self.fps)
        self.tick = 1 / rate if self.path.suffix.lower() in CONSTANT_RATE_SUFFIXES else Fraction(1, PTS_HZ)
        self.stream.time_base = self.stream.codec_context.time_base = self.tick
        self.stream.codec_context.options = self.options
        # 'h264' (what a decoder reads back), not the encoder's name 'libx264'
        self.codec, self.container = self.stream.codec_context.codec.canonical_name, self.out.format.name

    def _pts(self, frame: Any) -> int:
        """Ticks (1/90000 s; a frame in AVI): the source's timestamp where known, else index / fps;
        always increasing."""
        pts_s = getattr(frame, "pts_s", None)
        if pts_s is None:
            pts_s = frame.index / rate_from_fps(self.fps)
        pts = max(int(round(pts_s / self.tick)), self._last_pts + 1)
        self._last_pts = pts
        return pts

    def __call__(self, frame: Any) -> None:
        import av

        image = self._frame_image(frame)
        if self.padded:
            image = np.pad(image, ((0, self.stream.height - image.shape[0]), (0, self.stream.width - image.shape[1]),
                                   (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        video_frame.pts, video_frame.time_base = self._pts(frame), self.tick
        with self._writing():
            for packet in self.stream.encode(video_frame):
                self.out.mux(packet)
        self.written += 1

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """FFmpeg's write errors (the file is opened at the first packet: a read-only or full disk
        shows only then) as a ConfigError naming the file."""
        import av

        try:
            yield
        except (av.error.FFmpegError, OSError) as exc:
            raise ConfigError(f"cannot write video {self.path}: {getattr(exc, 'strerror', None) or exc}",
                              hint="write to a folder with free space that you can write to") from None

    def close(self) -> None:
        """Flush the encoder's delayed frames and finish the file (no-op when nothing was written)."""
        if self.out is None:
            return
        out, self.out = self.out, None
        with self._writing():
            try:
                for packet in self.stream.encode():  # flush the encoder's delayed frames
                    out.mux(packet)
            finally:
                out.close()


def refuse_output_over_input(source: str, out: str | Path) -> None:
    """A ConfigError when `out` is the file `source` is read from (also through a link or another
    spelling): writing it while reading it lost frames and the recording."""
    if str(out).startswith(GST_PREFIX) or str(source).startswith(GST_PREFIX):
        return
    src, dst = Path(str(source)), Path(str(out))
    same = src.is_file() and dst.exists() and os.path.samefile(src, dst)
    if same or (src.is_file() and src.resolve() == dst.resolve()):
        raise ConfigError(f"--out {out} is the video being read ({source})",
                          hint="write to another file, e.g. --out segmented.mp4; the source is never overwritten")


def check_writable(out: Path | str) -> None:
    """A ConfigError, before any frame is read, when `out` cannot be written: its folder (or the
    nearest one that exists) is on a read-only file system or not writable by this user."""
    folder = Path(out).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"--out {out}: {folder} is not a folder", hint="pass a file path inside a folder")
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise ConfigError(f"--out {out}: {folder} is on a read-only file system",
                          hint="write the video to a writable folder (e.g. under your home or /tmp)")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--out {out}: {folder} is not writable by this user",
                          hint="write the video to a folder you own, or fix its permissions")


def open_sink(out: str | Path, fps: float, mode: str = "contour", writer: str = "auto") -> Any:
    """The sink for `out`: 'gst:<pipeline starting with appsrc>' -> GStreamer; a file -> H.264 with
    PyAV where installed ('auto', 'pyav'), else OpenCV's writer ('opencv', or PyAV missing). A file
    in a folder that cannot be written is refused here, before any frame is read."""
    if writer not in WRITERS:
        raise ConfigError(f"video writer {writer!r} is not known", hint=f"use one of {', '.join(WRITERS)}")
    if str(out).startswith(GST_PREFIX):
        from llm4seg.runtime.doors.video.gstreamer import GstSink

        return GstSink(str(out)[len(GST_PREFIX):], fps, mode)
    check_writable(out)
    if writer == "pyav" or (writer == "auto" and pyav_available()):
        if not pyav_available():
            from llm4seg._optional import require

            require("av", "writing H.264 with PyAV")
        return PyAVSink(out, fps, mode)
    return VideoWriterSink(out, fps, mode)
