"""Video sources for the pipeline: one small interface over PyAV, OpenCV and GStreamer.

A source has `read() -> (ok, bgr_image)`, `release()`, and the attributes `fps` (frames per
second, 0.0 when unknown), `frame_count` (0 when unknown), `live`, `reader` (which library
decodes) and `last_pts_s` (the presentation time of the frame just read, None when the reader
has no timestamps). A frame that cannot be decoded is returned as `(True, empty array)` so the
pipeline counts it and goes on.

Files and stream URLs are read with PyAV where it is installed (container timestamps, RTSP over
TCP, every FFmpeg container); camera indices, and files PyAV cannot open, with OpenCV;
`gst:<pipeline>` with GStreamer (gstreamer.py beside this module).
"""

from __future__ import annotations

import importlib.util
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.fileio import stderr_fd_captured

GST_PREFIX = "gst:"
READERS = ("auto", "pyav", "opencv")
# Seconds PyAV waits to open, then to read, a network stream before it gives up.
STREAM_TIMEOUT_S = (10.0, 5.0)


class OpenCVSource:
    """A cv2.VideoCapture behind the source interface (no timestamps: `last_pts_s` is None)."""

    reader = "opencv"

    def __init__(self, cap: Any, live: bool) -> None:
        self.cap, self.live = cap, live
        get = getattr(cap, "get", None)
        self.fps = float(get(cv2.CAP_PROP_FPS) or 0.0) if get else 0.0
        self.frame_count = int(get(cv2.CAP_PROP_FRAME_COUNT) or 0) if get else 0
        self.last_pts_s: float | None = None

    def read(self) -> tuple[bool, np.ndarray | None]:
        """(ok, BGR frame) from the capture."""
        return self.cap.read()

    def release(self) -> None:
        """Release the capture."""
        self.cap.release()


class PyAVSource:
    """A file or stream decoded by PyAV (FFmpeg), frame by frame, with each frame's timestamp."""

    reader = "pyav"

    def __init__(self, source: str, live: bool) -> None:
        import av  # checked by the caller: PyAV is optional (the `video` extra)

        options = {"rtsp_transport": "tcp"} if str(source).startswith("rtsp") else {}
        self._av, self.live = av, live
        self.container = av.open(str(source), options=options, timeout=STREAM_TIMEOUT_S if live else None)
        if not self.container.streams.video:
            self.container.close()
            raise ConfigError(f"{source!r} holds no video stream", hint="pass a video file or stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self.frame_count = int(self.stream.frames or 0)
        self.codec = self.stream.codec_context.name
        self.last_pts_s: float | None = None
        self._packets = self.container.demux(self.stream)
        self._pending: list[Any] = []

    def read(self) -> tuple[bool, np.ndarray | None]:
        """(True, BGR frame) for the next frame (its time in `last_pts_s`), (True, empty) for an undecodable
        packet, (False, None) at the end."""
        while not self._pending:
            try:
                packet = next(self._packets)
            except (StopIteration, self._av.error.EOFError):
                return False, None
            try:
                # A flush packet (packet.size == 0) at the end returns the decoder's last frames.
                self._pending = list(packet.decode())
            except self._av.error.InvalidDataError:
                return True, np.empty((0, 0, 3), np.uint8)  # corrupt: counted and skipped
        frame = self._pending.pop(0)
        self.last_pts_s = float(frame.time) if frame.time is not None else None
        return True, frame.to_ndarray(format="bgr24")

    def release(self) -> None:
        """Close the container."""
        self.container.close()


class ImageSequenceSource:
    """Numbered images (frames/%03d.png) read one file at a time, from number 0 or 1 up to the first
    missing number. A file that cannot be decoded (truncated, damaged) is returned as `(True, empty)`
    so the pipeline flags it unreadable and goes on to the next one (OpenCV's own image-sequence
    reader ended the video there, silently)."""

    reader = "images"

    def __init__(self, pattern: str) -> None:
        self.pattern, self.live, self.fps, self.last_pts_s = pattern, False, 0.0, None
        self.number = 0 if Path(pattern % 0).is_file() else 1
        count = 0
        while Path(pattern % (self.number + count)).is_file():
            count += 1
        self.frame_count = count

    def read(self) -> tuple[bool, np.ndarray | None]:
        """(True, BGR frame), (True, empty) for an undecodable file, (False, None) after the last."""
        path = Path(self.pattern % self.number)
        if not path.is_file():
            return False, None
        self.number += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return True, (image if image is not None else np.empty((0, 0, 3), np.uint8))

    def release(self) -> None:
        """Nothing is held open."""


def pyav_available() -> bool:
    """True where PyAV (`pip install 'llm4seg[video]'`) can be imported."""
    return importlib.util.find_spec("av") is not None


def _opencv_source(source: Any, camera: bool, live: bool) -> OpenCVSource:
    cap = cv2.VideoCapture(int(source) if camera else str(source))
    if cap.isOpened():
        return OpenCVSource(cap, live)
    if camera:
        raise ConfigError(f"camera {source} cannot be opened",
                          hint="check that the camera is connected and not in use, and the index (0 is the first)")
    raise ConfigError(f"the video source {source!r} cannot be opened",
                      hint="check the path/URL; `pip install 'llm4seg[video]'` adds PyAV, which reads more containers")


def _pyav_source(source: str, live: bool) -> PyAVSource | None:
    """PyAV's source, or None where PyAV cannot open it (OpenCV then tries and names the problem)."""
    import av

    try:
        with stderr_fd_captured():
            return PyAVSource(source, live)
    except (av.error.FFmpegError, OSError):
        return None


def open_source(source: Any, reader: str = "auto") -> tuple[Any, bool]:
    """Open a video source; returns (source object, is_live).

    Args:
        source: a file path (a video, or a DICOM file: llm4seg/dicom/), a folder of one DICOM
            series, a camera index (int or
            digit string), a stream URL ('://'),
            'gst:<pipeline>' (GStreamer, ending in an appsink or not), or an object with read()
            and release() (like cv2.VideoCapture), used as a file-like source.
        reader: 'auto' (PyAV for files and URLs where installed, else OpenCV), 'pyav' or 'opencv'.
    """
    if reader not in READERS:
        raise ConfigError(f"video reader {reader!r} is not known", hint=f"use one of {', '.join(READERS)}")
    if hasattr(source, "read") and hasattr(source, "release"):
        return (source if hasattr(source, "last_pts_s") else OpenCVSource(source, False)), False
    if str(source).startswith(GST_PREFIX):
        from llm4seg.runtime.doors.video.gstreamer import GstSource

        src = GstSource(str(source)[len(GST_PREFIX):])
        return src, src.live
    camera = isinstance(source, int) or str(source).isdigit()
    live = camera or "://" in str(source)
    if not live and is_image_sequence(str(source)):  # frames/%03d.png: numbered images, each read on its own
        return ImageSequenceSource(str(source)), False
    if not live and Path(str(source)).is_dir():  # a DICOM series (PACS export folder)
        return _dicom_folder(Path(str(source))), False
    if not live and not Path(str(source)).is_file():
        raise ConfigError(f"video source {source!r} does not exist", hint="pass a video file, a camera index or a stream URL")
    if not live and Path(str(source)).suffix.lower() not in (".mp4", ".mkv", ".mov", ".avi", ".webm"):
        from llm4seg.dicom import DicomSource, is_dicom_file

        if is_dicom_file(str(source)):  # a cine loop or image from an ultrasound cart or endoscopy tower
            return DicomSource(str(source)), False
    if not live and mp4_without_frames(Path(str(source))):
        raise ConfigError(f"the video {source!r} is a valid MP4 file with no frames in it",
                          hint="check the recording (it stopped before its first frame) or pass another file")
    if reader == "pyav" and not pyav_available():
        from llm4seg._optional import require

        require("av", "reading video with PyAV")
    if not camera and reader != "opencv" and pyav_available():
        src = _pyav_source(str(source), live)
        if src is not None:
            return src, live
    return _opencv_source(source, camera, live), live


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _dicom_folder(folder: Path) -> Any:
    """A folder as a source: one DICOM series; a folder of plain images is told how to pass them."""
    from llm4seg.dicom import dicom_files_in, open_dicom

    if not dicom_files_in(folder):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            digits = len(images[0].stem) if images[0].stem.isdigit() else 3
            raise ConfigError(f"{folder} is a folder of {len(images)} images ({images[0].name}, ...), not a DICOM series",
                              hint=f"pass them as a numbered sequence, e.g. '{folder}/%0{digits}d{images[0].suffix}'")
    return open_dicom(folder)


def is_image_sequence(source: str) -> bool:
    """True for a printf pattern of numbered images (frames/%03d.png) whose first file (numbered 0
    or 1) exists; a pattern with no such file is a ConfigError naming the files looked for."""
    if not re.search(r"%0?\d*d", source):
        return False
    first = [source % n for n in (0, 1)]
    if not any(Path(f).is_file() for f in first):
        raise ConfigError(f"no image matches the sequence {source!r} (looked for {first[0]} and {first[1]})",
                          hint="number the images from 0 or 1, e.g. frames/000.png, frames/001.png, ...")
    return True


def mp4_without_frames(path: Path) -> bool:
    """True for an MP4/MOV file whose top-level boxes hold a movie header (moov) but no media data
    (every mdat empty): a recording stopped before its first frame."""
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


def rate_from_fps(fps: float) -> Fraction:
    """A frame rate as the fraction containers store (29.97 -> 30000/1001); 25 when unknown."""
    if not fps or fps <= 0 or fps != fps:
        return Fraction(25)
    return Fraction(fps).limit_denominator(1001)
