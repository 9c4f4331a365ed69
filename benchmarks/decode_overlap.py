"""`video` frames/s on a DICOM cine and its H.264 copy against inference alone, in turns (issue 47, item 4).

    python -m benchmarks.decode_overlap --artifact ART/model.onnx --cine color3d_jpeg_baseline.dcm [--rounds 3]

Each path runs the runtime's VideoPipeline (decode thread, inference thread, sink thread joined by
bounded queues: decoding runs ahead of inference) with a sink that keeps nothing, so what differs is
the source alone:

- `inference alone`: the cine's frames decoded once beforehand and served from memory;
- `DICOM`: the cine read by `DicomSource` (8-bit YBR converted by OpenCV, checked on frame 0);
- `DICOM, pydicom YBR`: the same with pydicom's own YBR to RGB conversion (the way before);
- `H.264 (PyAV)`: the frames written once as H.264 (libx264) and read back with PyAV.

Paths run in turns, round after round, on one warmed Segmenter; each ratio is to the same round's
inference alone, and the median over rounds is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from llm4seg.dicom import DicomSource
from llm4seg.runtime import Segmenter, VideoPipeline
from benchmarks.dicom_decode import h264_copy


class MemorySource:
    """Frames already decoded, read like cv2.VideoCapture (no decode cost)."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.index = frames, 0
        self.fps, self.frame_count, self.last_pts_s = 30.0, len(frames), None

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The next frame, (False, None) after the last."""
        if self.index >= len(self.frames):
            return False, None
        self.index += 1
        return True, self.frames[self.index - 1]

    def release(self) -> None:
        """Nothing to close."""


class PydicomYbrSource(DicomSource):
    """DicomSource with pydicom's YBR conversion (the way before the OpenCV conversion)."""

    def _ybr_by_opencv(self) -> bool:
        return False


def decoded(cine: Path) -> list[np.ndarray]:
    """Every frame of the cine as BGR, read once."""
    source, frames = DicomSource(cine), []
    while True:
        ok, frame = source.read()
        if not ok:
            return frames
        frames.append(frame)


def run_path(seg: Segmenter, source) -> dict:
    """One pass of the pipeline over `source`; frames/s and the decode and infer p50 (ms)."""
    summary = VideoPipeline(seg, source, sink=lambda frame: None).run().summary()
    lat = summary["latency_ms"]
    return {"fps": summary["fps"], "frames": summary["frames_out"],
            "decode_p50_ms": lat["decode"]["p50"], "infer_p50_ms": lat["infer"]["p50"]}


def main() -> None:
    """Command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True, type=Path)
    parser.add_argument("--cine", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the per-round figures here")
    args = parser.parse_args()
    frames = decoded(args.cine)
    with tempfile.TemporaryDirectory() as tmp, Segmenter(args.artifact) as seg:
        mp4 = h264_copy(args.cine, Path(tmp))
        paths = {"inference alone": lambda: MemorySource(frames), "DICOM": lambda: DicomSource(args.cine),
                 "DICOM, pydicom YBR": lambda: PydicomYbrSource(args.cine), "H.264 (PyAV)": lambda: str(mp4)}
        seg.segment_one(frames[0])  # load and warm the session outside the timings
        rounds = [{name: run_path(seg, make()) for name, make in paths.items()} for _ in range(args.rounds)]
    print(f"cine: {args.cine.name} ({len(frames)} frames, {frames[0].shape[1]}x{frames[0].shape[0]}); "
          f"artifact: {args.artifact}; {args.rounds} rounds in turns, medians")
    print(f"{'path':>20} {'frames/s':>9} {'x inference alone':>18} {'decode p50 ms':>14} {'infer p50 ms':>13}")
    for name in paths:
        ratio = statistics.median(r[name]["fps"] / r["inference alone"]["fps"] for r in rounds)
        med = {k: statistics.median(r[name][k] for r in rounds) for k in ("fps", "decode_p50_ms", "infer_p50_ms")}
        print(f"{name:>20} {med['fps']:>9.1f} {ratio:>18.3f} {med['decode_p50_ms']:>14.2f} {med['infer_p50_ms']:>13.1f}")
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=1))


if __name__ == "__main__":
    main()
