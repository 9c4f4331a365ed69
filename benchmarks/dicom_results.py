"""Cost of DICOM results per frame beside the cost of decoding the frame, in turns.

    python -m benchmarks.dicom_results --cine color3d_jpeg_baseline.dcm [--rounds 3] [--frames 30]
        [--send AE@HOST:PORT ...] [--stow URL] [--with-nagle]

For the first `--frames` frames of the cine, each round times, one after the other: decoding them
(`llm4seg.dicom.DicomSource`), building a SEG for each (`seg_for_frame`, highdicom) with the
tissue region as the mask, writing those SEGs (`write_datasets`), RLE-encoding each overlaid frame
for the Secondary Capture (`OverlayCapture.add`), and, when given, sending the SEGs to each DICOM
node (C-STORE, one association; with `--with-nagle` also without TCP_NODELAY, to see what it saves)
and a DICOMweb server (STOW-RS: one multipart request for all, then one request per SEG). Everything is reported in ms per frame and as a ratio
to the same round's decode: whether `--seg-frames all` keeps up with a live source.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _frames(cine: Path, n: int) -> list:
    from llm4seg.dicom import DicomSource

    source, frames = DicomSource(cine), []
    while len(frames) < n:
        ok, frame = source.read()
        if not ok:
            break
        frames.append(frame)
    source.release()
    return frames


def one_round(cine: Path, n: int, folder: Path, send: list[str], stow: str | None, with_nagle: bool = False) -> dict:
    """One round's times (ms per frame) of every step, with the frames it covered."""
    import numpy as np
    from pydicom.uid import generate_uid

    from llm4seg.dicom import DicomSource
    from llm4seg.runtime.core.overlay import overlay
    from llm4seg.runtime.doors.dicom.capture import OverlayCapture
    from llm4seg.runtime.doors.dicom.net import DicomNode, c_store, stow_rs
    from llm4seg.runtime.doors.dicom.results import write_datasets
    from llm4seg.runtime.doors.dicom.seg import Algorithm, seg_for_frame

    t = [time.perf_counter()]
    frames = _frames(cine, n)
    t.append(time.perf_counter())
    source = DicomSource(cine)
    mask = source.geometry.region if source.geometry.region is not None else np.ones((source.rows, source.cols), np.uint8)
    algorithm, series = Algorithm("llm4seg bench", "0", "0" * 64), generate_uid()
    segs = {f"seg_frame{i + 1:04d}.dcm": seg_for_frame(source.ds, i + 1, mask, algorithm, series, i + 1)
            for i in range(len(frames))}
    t.append(time.perf_counter())
    paths = write_datasets(segs, folder / generate_uid())
    t.append(time.perf_counter())
    capture = OverlayCapture([source.ds], None)
    for frame in frames:
        capture.add(overlay(frame, mask, "contour"))
    t.append(time.perf_counter())
    steps = ["decode", "seg_build", "seg_write", "overlay_sc_encode"]
    for node in send:
        for no_delay in (True, False) if with_nagle else (True,):
            c_store(paths, DicomNode.from_text(node), no_delay=no_delay)
            t.append(time.perf_counter())
            steps.append(f"c_store {node}" + ("" if no_delay else " (Nagle on)"))
    if stow:
        stow_rs(paths, stow)  # every SEG of the run in one multipart request (what `video --stow` sends)
        t.append(time.perf_counter())
        steps.append("stow_rs")
        for path in paths:  # the same SEGs one request each, for comparison (a result per request)
            stow_rs([path], stow)
        t.append(time.perf_counter())
        steps.append("stow_rs one request per instance")
    per_frame = {step: 1000 * (b - a) / len(frames) for step, a, b in zip(steps, t, t[1:])}
    return {"frames": len(frames), "ms_per_frame": per_frame}


def run(cine: Path, rounds: int, n: int, send: list[str] | None = None, stow: str | None = None,
        with_nagle: bool = False) -> dict:
    """Every round's times and the median ratio of each step to the same round's decode."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = [one_round(cine, n, Path(tmp), send or [], stow, with_nagle) for _ in range(rounds)]
    steps = rows[0]["ms_per_frame"]
    ratios = {s: statistics.median(r["ms_per_frame"][s] / r["ms_per_frame"]["decode"] for r in rows)
              for s in steps if s != "decode"}
    return {"cine": cine.name, "rounds": rows, "median_ratio_to_decode": ratios}


def main() -> None:
    """Command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cine", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=30, help="frames of the cine per round")
    parser.add_argument("--send", action="append", default=[], help="C-STORE the SEGs to AE@HOST:PORT each round "
                        "(repeatable)")
    parser.add_argument("--with-nagle", action="store_true", help="also C-STORE without TCP_NODELAY")
    parser.add_argument("--stow", default=None, help="STOW-RS the SEGs to this DICOMweb root each round")
    args = parser.parse_args()
    print(json.dumps(run(args.cine, args.rounds, args.frames, args.send, args.stow, args.with_nagle), indent=1))


if __name__ == "__main__":
    main()
