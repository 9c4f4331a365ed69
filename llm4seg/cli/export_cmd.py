"""`llm4seg export`: checkpoint -> ONNX (FP32, FP16, INT8 QDQ) and TensorRT engines, with parity gates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.options import DataOpt, JsonOpt, SplitOpt
from llm4seg.cli.render import human, print_json, print_table, stderr, stdout


def export(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifact folder.")] = Path("artifacts"),
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write model.fp16.onnx (typed FP16).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write model.int8.onnx (QDQ, Dice-gated).")] = False,
    calib: Annotated[Optional[str], typer.Option("--calib", help="Calibration images (dataset folder) for --int8.")] = None,
    calib_split: Annotated[Optional[str], typer.Option("--calib-split", help="Split of --calib to draw calibration images from (e.g. train1).")] = None,
    data: DataOpt = None,
    split: SplitOpt = None,
    int8_target: Annotated[Optional[str], typer.Option("--int8-target", help="Pick the INT8 candidate for cpu (fastest passing one, timed here) or tensorrt (most INT8 passing one) [default: tensorrt with --build-engines, else cpu].", show_default=False)] = None,
    pt2: Annotated[bool, typer.Option("--pt2", help="Also write model.pt2 (torch.export program) for the runtime's torch backend.")] = False,
    engine: Annotated[bool, typer.Option("--build-engines", "--engine", help="Build TensorRT engines from the FP16/INT8 graphs (--engine is the older name; in bench and video --engine names an artifact).")] = False,
    rtx_targets: Annotated[str, typer.Option("--rtx-targets", help="Compute capabilities the real TensorRT-RTX parse and build is made for, where TensorRT-RTX is installed (SM75, SM80, SM86, SM89, SM120, SM121); with --build-engines their engines are kept.")] = "SM89",
    opset: Annotated[int, typer.Option("--opset", help="17 (decomposed ops, any TensorRT 10.x, Jetson) or 23 (ONNX Attention, RMSNormalization; TensorRT >= 10.15).")] = 17,
    batch: Annotated[str, typer.Option("--batch", help="Dynamic batch range MIN:OPT:MAX.")] = "1:1:16",
    parity_images: Annotated[int, typer.Option("--parity-images", help="Held-out images for parity and INT8 gates.")] = 16,
    calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images for INT8 (memory grows with it).")] = 16,
    frames: Annotated[bool, typer.Option("--frames/--no-frames", help="Beside each ONNX graph, write its frames graphs (uint8 frames in, mask out, the preprocessing inside): .frames.onnx (any size) and .frames<S>.onnx (model size).")] = True,
    frames_color: Annotated[str, typer.Option("--frames-color", help="Channel order the frames graphs take: BGR (OpenCV, PyAV bgr24) or RGB.")] = "BGR",
    deepstream: Annotated[bool, typer.Option("--deepstream", help="Also write .nvinfer<S>.onnx frames graphs (float pixel values in) and deepstream_nvinfer.txt for DeepStream's nvinfer.")] = False,
    triton: Annotated[Optional[Path], typer.Option("--triton", help="Also write a Triton model repository here "
                                                   "(same as `llm4seg triton OUT --out REPO`).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Export CHECKPOINT for deployment; fails loudly when an artifact disagrees with the checkpoint.

    \b
    Examples:
      llm4seg export runs/busi1/checkpoints/best --out art --fp16
      llm4seg export runs/busi1/checkpoints/best --out art --int8 --calib DATA --data DATA --split val1
    """
    from llm4seg.errors import ExportError
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint, parse_batch
    from llm4seg.export.rtx_build import parse_targets
    from llm4seg.runtime.doors.triton.repository import check_repository_folder, write_repository

    opts = ExportOptions(out=out, fp16=fp16, int8=int8, calib=calib, calib_split=calib_split, data=data, split=split,
                         engine=engine, pt2=pt2, int8_target=int8_target, opset=opset, batch=parse_batch(batch),
                         parity_images=parity_images, calib_images=calib_images, rtx_targets=parse_targets(rtx_targets),
                         frames=frames, frames_color=frames_color.upper(), deepstream=deepstream)
    if triton is not None:
        check_repository_folder(triton)  # before a long export, not after
    try:
        summary = export_checkpoint(checkpoint, opts, log=lambda s: stderr.print(s, style="dim"))
    except ExportError as exc:  # INT8 refused: FP32/FP16 were written, and their engines still need building
        if getattr(exc, "summary", None) and not json_out:
            _print_recipes(exc.summary)
        if getattr(exc, "summary", None) and triton is not None:  # what was kept can still be served
            stderr.print(f"the Triton repository {triton} was not written (the export stopped); write it from the "
                         f"artifacts that were kept: llm4seg triton {out} --out {triton}", soft_wrap=True, markup=False)
        raise
    if triton is not None:
        from llm4seg.cli.triton_cmd import repository_options

        repo = write_repository(out, triton, repository_options(True, None, 1, False, "auto"))
        summary["triton_repository"] = {"folder": str(repo.folder), "models": repo.models, "skipped": repo.skipped}
    if json_out:
        print_json(summary)
    else:
        _render(summary)


def _render(summary: dict) -> None:
    """The artifact table, then where things went and what to build on the target."""
    rows = [[r["artifact"], f"{r['size_mb']:.1f} MB", human(r["macs"]), f"{r['dice_agreement']:.4f}",
             f"{r['max_abs_err']:.2e}", f"{r['mean_abs_err']:.1e}",
             "-" if r["cpu_latency_ms"] is None else f"{r['cpu_latency_ms']:.1f} ms"] for r in summary["rows"]]
    print_table(f"artifacts in {summary['out']} (gated on {summary['data']} at three sizes, some tinted)",
                ["artifact", "size", "MACs", "mask agreement", "max prob error", "mean prob error", "CPU latency b1"],
                rows)
    if summary.get("calibration"):
        stdout.print(f"INT8 calibrated on {summary['calibration']}; gates scored {summary['data']}", soft_wrap=True)
    stdout.print(f"manifest: {summary['manifest']}", soft_wrap=True)
    if summary.get("rtx_engines"):
        stdout.print(f"TensorRT-RTX engines built here (NOT RUN: they need an RTX GPU; check them there with "
                     f"llm4seg adopt-engine): {', '.join(summary['rtx_engines'])}", soft_wrap=True, markup=False)
    if summary.get("triton_repository"):
        repo = summary["triton_repository"]
        stdout.print(f"Triton model repository: {repo['folder']} ({', '.join(repo['models'])}); "
                     f"serve it with llm4seg serve {repo['folder']}", soft_wrap=True, markup=False)
    _print_recipes(summary)


def _print_recipes(summary: dict) -> None:
    """The trtexec/polygraphy lines for every engine that was not built here."""
    built = {r["artifact"] for r in summary["rows"]}
    for plan, lines in (summary.get("engine_recipes") or {}).items():
        if plan in built:
            continue
        stdout.print(f"to build {plan} on the target (TensorRT is not installed here), in {summary['out']} there:",
                     soft_wrap=True, markup=False)
        for key in ("trtexec", "polygraphy"):
            stdout.print(f"  {lines[key]}", soft_wrap=True, markup=False, highlight=False)
        stdout.print(f"  then: {lines['adopt']}   (checks it and adds it to manifest.json)", soft_wrap=True, markup=False)
