"""`llm4seg video`: segment a video (file, camera index or stream URL) and write the overlaid result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.dicom_cmd import DicomOutOpt, DicomOutputs, OverlayScOpt, SegFramesOpt, SendOpt, StowOpt
from llm4seg.cli.options import CompileOpt, JsonOpt, check_compile
from llm4seg.cli.render import print_json, stdout


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
    smooth: Annotated[str, typer.Option("--smooth", help="Temporal smoothing of the probabilities: none, ema[:ALPHA] "
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
    from llm4seg.runtime import Segmenter, VideoPipeline
    from llm4seg.runtime.bench import backend_options
    from llm4seg.runtime.video import open_sink

    from llm4seg.fileio import write_jsonl_atomic
    from llm4seg.runtime.temporal import smoother_from_text
    from llm4seg.runtime.video_sinks import check_writable, refuse_output_over_input

    check_compile(compile_with, [engine])
    refuse_output_over_input(source, out)
    smoother = smoother_from_text(smooth)
    dicom = DicomOutputs(seg_frames, dicom_out, overlay_sc, list(send), list(stow))
    dicom.check(source, out)
    if frame_log is not None:
        refuse_output_over_input(source, frame_log)
        check_writable(frame_log)
    with Segmenter(engine, **backend_options(engine, compile_with)) as seg:
        pipeline = VideoPipeline(seg, source, sink=lambda f: None, batch=batch, reader=reader, smooth=smoother)
        pipeline.sink = open_sink(out, pipeline.fps, overlay_mode, writer)
        results = dicom.sink(pipeline.cap, seg, overlay_mode) if dicom.wanted else None
        if results is not None:
            pipeline.sink = results.tee(pipeline.sink)
        report = pipeline.run().summary()
    if results is not None and not pipeline.interrupted:
        report["dicom"] = dicom.finish(results)
    report.update(out=out, reader=pipeline.cap.reader, codec=pipeline.sink.codec, container=pipeline.sink.container)
    if frame_log is not None:
        write_jsonl_atomic(frame_log, pipeline.report.frames)
        report["frame_log"] = str(frame_log)
    if report["codec"] == "mp4v" and writer == "auto":  # issue 34: say how to get H.264
        report["events"].append("PyAV is not installed, so OpenCV wrote MPEG-4 Part 2 (mp4v), which browsers and most "
                                "players do not show: pip install 'llm4seg[video]' writes H.264")
    if json_out:
        print_json(report)
        if pipeline.interrupted:
            raise typer.Exit(130)
        return
    stdout.print(f"{report['frames_out']} frames ({report['frames_in']} read, {report['dropped']} dropped, "
                 f"{report['skipped_corrupt']} corrupt) in {report['wall_s']:.1f} s = {report['fps']:.1f} fps -> {out} "
                 f"({_written(report)}; read with {report['reader']})", soft_wrap=True)
    for stage, lat in report["latency_ms"].items():
        if lat.get("n"):
            label = "decode->written (incl. queueing)" if stage == "end_to_end" else stage
            stdout.print(f"  {label:>10}: p50 {lat['p50']:.1f} ms  p90 {lat['p90']:.1f} ms  p99 {lat['p99']:.1f} ms")
    _print_quality(report.get("quality"))
    if report.get("dicom"):
        d = report["dicom"]
        sent = "".join(f"; {s['protocol']} to {s['to']}" for s in d["sent"])
        stdout.print(f"  DICOM: {', '.join(d['files'])} in {d['dicom_out']}{sent}", soft_wrap=True)
    for event in report["events"]:
        stdout.print(f"  note: {event}")
    if pipeline.interrupted:
        raise typer.Exit(130)


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
                 soft_wrap=True)
    if conf:
        stdout.print(f"  confidence: mean {conf['mean']:.3f}, p10 {conf['p10']:.3f}, min {conf['min']:.3f}; "
                     f"flags: {flags}", soft_wrap=True)


def _written(report: dict) -> str:
    """'h264 in mp4', or 'nothing written' when no frame reached the sink."""
    if not report["codec"]:
        return "nothing written"
    return f"{report['codec']} in {report['container']}" if report["container"] else report["codec"]
