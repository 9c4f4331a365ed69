"""`llm4seg export`: checkpoint -> ONNX (FP32, FP16, INT8 QDQ) and TensorRT engines, with parity gates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from llm4seg.cli.options import DataOpt, JsonOpt, SplitOpt
from llm4seg.cli.render import human, print_json, stderr, stdout


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Artifact folder.")] = Path("artifacts"),
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write model.fp16.onnx (typed FP16).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write model.int8.onnx (QDQ, Dice-gated).")] = False,
    calib: Annotated[Optional[str], typer.Option("--calib", help="Calibration images (dataset folder) for --int8.")] = None,
    calib_split: Annotated[Optional[str], typer.Option("--calib-split", help="Split of --calib to draw calibration images from (e.g. train1).")] = None,
    data: DataOpt = None,
    split: SplitOpt = None,
    engine: Annotated[bool, typer.Option("--engine", help="Build TensorRT engines from the FP16/INT8 graphs.")] = False,
    opset: Annotated[int, typer.Option("--opset", help="17 (decomposed ops, any TensorRT 10.x, Jetson) or 23 (ONNX Attention, RMSNormalization; TensorRT >= 10.15).")] = 17,
    batch: Annotated[str, typer.Option("--batch", help="Dynamic batch range MIN:OPT:MAX.")] = "1:1:16",
    parity_images: Annotated[int, typer.Option("--parity-images", help="Held-out images for parity and INT8 gates.")] = 16,
    calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images for INT8 (memory grows with it).")] = 16,
    json_out: JsonOpt = False,
) -> None:
    """Export CHECKPOINT for deployment; fails loudly when an artifact disagrees with the checkpoint."""
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint, parse_batch

    opts = ExportOptions(out=out, fp16=fp16, int8=int8, calib=calib, calib_split=calib_split, data=data, split=split, engine=engine,
                         opset=opset, batch=parse_batch(batch), parity_images=parity_images, calib_images=calib_images)
    if engine:
        from llm4seg._optional import require

        require("tensorrt", "--engine (FP16/INT8 ONNX artifacts can still be exported without it)")
    summary = export_checkpoint(checkpoint, opts, log=lambda s: stderr.print(f"[dim]{s}[/dim]"))
    if json_out:
        print_json(summary)
        return
    table = Table(title=f"artifacts in {summary['out']} (parity on {summary['data']})")
    for col in ("artifact", "size", "MACs", "parity Dice", "max error", "CPU latency b1"):
        table.add_column(col, justify="left" if col == "artifact" else "right")
    for r in summary["rows"]:
        table.add_row(r["artifact"], f"{r['size_mb']:.1f} MB", human(r["macs"]), f"{r['dice_agreement']:.4f}",
                      f"{r['max_abs_err']:.2e}", f"{r['cpu_latency_ms']:.1f} ms")
    stdout.print(table)
