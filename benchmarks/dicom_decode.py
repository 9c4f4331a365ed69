"""Decode cost per frame of a DICOM cine beside the same frames as an H.264 file, in turns.

    python -m benchmarks.dicom_decode --cine color3d_jpeg_baseline.dcm [--rounds 3]

The cine is read with `llm4seg.dicom.DicomSource` (pydicom, JPEG baseline through pylibjpeg,
YBR to RGB, to BGR); its frames are written once as H.264 (libx264, yuv420p) and read back with
the runtime's PyAV source. Both read every frame, round after round, so the machine's drifting
speed hits each alike; the ratio is DICOM over H.264 in the same round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path


def _read_all(source) -> int:
    n = 0
    while True:
        ok, frame = source.read()
        if not ok:
            break
        n += 1
    source.release()
    return n


def h264_copy(cine: Path, folder: Path) -> Path:
    """The cine's frames written once as H.264 (libx264, yuv420p, 30 frames/s) in `folder`."""
    import av

    from llm4seg.dicom import DicomSource

    path = folder / "cine.mp4"
    source = DicomSource(cine)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = source.cols, source.rows, "yuv420p"
        while True:
            ok, frame = source.read()
            if not ok:
                break
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def run(cine: Path, rounds: int) -> dict:
    """Per-frame read time (ms) of the DICOM cine and of its H.264 copy, per round and the median ratio."""
    from llm4seg.dicom import DicomSource
    from llm4seg.runtime.doors.video.sources import open_source

    with tempfile.TemporaryDirectory() as tmp:
        mp4 = h264_copy(cine, Path(tmp))
        rows = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            n_dicom = _read_all(DicomSource(cine))
            t1 = time.perf_counter()
            n_h264 = _read_all(open_source(str(mp4), "pyav")[0])
            t2 = time.perf_counter()
            rows.append({"dicom_ms_per_frame": 1000 * (t1 - t0) / n_dicom, "h264_ms_per_frame": 1000 * (t2 - t1) / n_h264,
                         "frames": [n_dicom, n_h264]})
    ratio = statistics.median(r["dicom_ms_per_frame"] / r["h264_ms_per_frame"] for r in rows)
    return {"cine": cine.name, "rounds": rows, "median_ratio_dicom_over_h264": ratio}


def main() -> None:
    """Command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cine", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(run(args.cine, args.rounds), indent=1))


if __name__ == "__main__":
    main()
