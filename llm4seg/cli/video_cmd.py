"""`llm4seg video`: segment a video (file, camera index or stream URL) and write the overlaid result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.dicom_cmd import DicomOutOpt, OverlayScOpt, SegFramesOpt, SendOpt, StowOpt
from llm4seg.cli.options import CompileOpt, JsonOpt, check_compile
from llm4seg.cli.render import print_json, stderr, stdout


def video(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Video file, camera index (0), stream URL (rtsp://...) or "
                                          "'gst:<GStreamer pipeline>' (its appsink is added or converted to BGR).")],
    engine: Annotated[Path, typer.Option("--engine", help="Artifact: .onnx, .plan or .pt2 from `llm4seg export`, "
                                         "or a served model: grpc://HOST:8001/segment.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output video (.mp4, .mkv, .mov: H.264; .webm: VP9) or "
                                     "'gst:appsrc ! ... ' (a GStreamer pipeline fed BGR frames).")] = "segmented.mp4",
    reader: Annotated[str, typer.Option("--reader", help="auto (PyAV for files and URLs, else OpenCV), pyav or opencv.")] = "auto",
    writer: Annotated[str, typer.Option("--writer", help="auto (H.264 with PyAV, else OpenCV), pyav or opencv.")] = "auto",
    overlay_mode: Annotated[str, typer.Option("--overlay", help="contour or fill.")] = "contour",
    batch: Annotated[int, typer.Option("--batch", help="Frames per inference call.")] = 1,
    smooth: Annotated[str, typer.Option("--smooth", help="Temporal smoothing of the probabilities: none, ema[:ALPHA], flow[:ALPHA] "
                                        "or median[:WINDOW] (causal: no frame is delayed).")] = "none",
    frame_log: Annotated[Optional[Path], typer.Option("--frame-log", help="Write one JSON line per frame "
                                                      "(confidence, flags, area) to this file.")] = None,
    seg_frames: SegFramesOpt = None,
    dicom_out: DicomOutOpt = None,
    overlay_sc: OverlayScOpt = False,
    send: SendOpt = [],  # noqa: B006 (typer needs a list default)
    stow: StowOpt = [],  # noqa: B006
    compile_with: CompileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write OUT with the masks drawn on every frame; print frames, fps and per-stage latency.

    \b
    Examples:
      llm4seg video clip.mp4 --engine art/model.onnx --out segmented.mp4
      llm4seg video 0 --engine art/model.onnx --out live.mp4      # camera 0
      llm4seg video 'gst:videotestsrc num-buffers=100' --engine art/model.onnx \\
          --out 'gst:appsrc ! videoconvert ! x264enc ! mp4mux ! filesink location=seg.mp4'
      llm4seg video clip.mp4 --engine art/model.pt2 --compile aoti  # GPU: compiled once, then cached
      llm4seg video clip.mp4 --engine art/model.onnx --smooth ema:0.5 --frame-log frames.jsonl
      llm4seg video cine.dcm --engine art/model.onnx --seg-frames 1,15 --overlay-sc --send ORTHANC@pacs:4242
    """
    from llm4seg.runtime.doors.dicom.job import DicomJob
    from llm4seg.runtime.doors.video.job import VideoJob
    from llm4seg.runtime.tools.bench import backend_options

    check_compile(compile_with, [engine])
    job = VideoJob(source, engine, out, reader, writer, overlay_mode, batch, smooth, frame_log,
                   DicomJob(seg_frames, dicom_out, overlay_sc, list(send), list(stow)),
                   backend_options(engine, compile_with))
    report = job.run()
    if json_out:
        print_json(report)
    else:
        print_report(report)
    if report["interrupted"]:
        raise typer.Exit(130)
    if report["frames_out"] == 0:
        stderr.print(f"error: no frame of {source} was written ({report['frames_in']} read, "
                     f"{report['skipped_corrupt']} unreadable)", soft_wrap=True, markup=False)
        raise typer.Exit(1)


def print_report(report: dict) -> None:
    """The run as a clinician reads it on the terminal: frames and speed, latency per stage, the
    pixel size and areas in mm^2, stability and flags, DICOM results, and every note."""
    stdout.print(f"{report['frames_out']} frames ({report['frames_in']} read, {report['dropped']} dropped, "
                 f"{report['skipped_corrupt']} unreadable) in {report['wall_s']:.1f} s = {report['fps']:.1f} fps -> "
                 f"{report['out']} ({_written(report)}; read with {report['reader']})", soft_wrap=True, markup=False)
    for stage, lat in report["latency_ms"].items():
        if lat.get("n"):
            label = "decode->written (incl. queueing)" if stage == "end_to_end" else stage
            stdout.print(f"  {label:>10}: p50 {lat['p50']:.1f} ms  p90 {lat['p90']:.1f} ms  p99 {lat['p99']:.1f} ms",
                         markup=False)
    _print_physical(report.get("physical"))
    _print_quality(report.get("quality"))
    if report.get("dicom"):
        d = report["dicom"]
        sent = "".join(f"; {s['protocol']} {s['instances']} to {s['to']}" for s in d["sent"])
        stdout.print(f"  DICOM: {', '.join(d['files'])} in {d['dicom_out']}{sent}", soft_wrap=True, markup=False)
        for note in d.get("notes", []):
            stdout.print(f"  note: {note}", soft_wrap=True, markup=False)
    for event in report["events"]:
        stdout.print(f"  note: {event}", soft_wrap=True, markup=False)


def _print_physical(physical: dict | None) -> None:
    """A DICOM source's pixel size, its source, the area in mm^2 and every geometry note."""
    if not physical:
        return
    mm = physical.get("mm_per_px")
    size = f"{mm[0]:.4f} x {mm[1]:.4f} mm per pixel ({physical.get('source')})" if mm else "pixel size unknown"
    area = physical.get("area_mm2")
    areas = f"; mask area mean {area['mean']:.1f} mm^2, max {area['max']:.1f} mm^2" if area else ""
    stdout.print(f"  geometry: {size}{areas}", soft_wrap=True, markup=False)
    for note in physical.get("notes", []):
        stdout.print(f"  note: {note}", soft_wrap=True, markup=False)


def _print_quality(quality: dict | None) -> None:
    """Flicker, confidence and flags in two lines (the whole record is in --json and --frame-log)."""
    if not quality:
        return
    f2f = quality["frame_to_frame_dice"]
    conf = quality["confidence"] or {}
    flags = ", ".join(f"{k} {v}" for k, v in quality["flag_counts"].items() if v) or "none"
    stdout.print(f"  stability: frame-to-frame Dice {f2f:.3f} (flicker {quality['flicker']:.3f}), mask appears/vanishes "
                 f"in {quality['toggle_fraction'] or 0:.1%} of frame pairs; smoothing: {quality['smoothing']}"
                 if f2f is not None else f"  stability: no frame pair with a mask; smoothing: {quality['smoothing']}",
                 soft_wrap=True, markup=False)
    if conf:
        stdout.print(f"  confidence: mean {conf['mean']:.3f}, p10 {conf['p10']:.3f}, min {conf['min']:.3f}; "
                     f"flags: {flags}", soft_wrap=True, markup=False)


def _written(report: dict) -> str:
    """'h264 in mp4', or 'nothing written' when no frame reached the sink."""
    if not report["codec"]:
        return "nothing written"
    return f"{report['codec']} in {report['container']}" if report["container"] else report["codec"]
