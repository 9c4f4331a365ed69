"""Frame -> mask latency: the frames graph (preprocessing inside, uint8 frames in) beside the
Segmenter + float graph (the frame contract on the host), interleaved in one process.

Run: python -m benchmarks.frames_graph --data ../shared/datasets [--llm smollm2] [--iterations 10]

An llm4seg model with random weights (speed only; SmolLM2's layer by default) is exported with its
frames graphs; then, per frame size (the model's 256 x 256, one BUSI image and one Kvasir-SEG image
at their native sizes) and batch (1, 8: copies of one frame, as a video stream's frames share a
size), `Segmenter.segment` runs both artifacts in turns. Medians and the ratio frames/host are
printed as a Markdown table with this CPU's name.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import cv2
import onnxruntime as ort

import llm4seg
from llm4seg.export.pipeline import ExportOptions, export_checkpoint
from llm4seg.runtime import Segmenter
from llm4seg.runtime.tools.bench import cpu_name
from llm4seg.runtime.core.stats import interleaved_ms


def native_frame(folder: Path, split: str) -> tuple[str, object]:
    """The first image of a dataset split, BGR at its own size."""
    stem = (folder / "splits" / f"{split}.txt").read_text().splitlines()[0].strip()
    path = next((folder / "images").glob(f"{stem}.*"))
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return f"{folder.name} {image.shape[1]}x{image.shape[0]}", image


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="Folder holding busi/ and kvasir-seg/.")
    p.add_argument("--llm", default="smollm2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp())
    ckpt = llm4seg.save_checkpoint(llm4seg.create_model("llm4seg_random", llm=args.llm), work / "ckpt")
    export_checkpoint(ckpt, ExportOptions(out=work / "art", parity_images=4), log=lambda s: None)
    data = Path(args.data)
    busi_name, busi = native_frame(data / "busi", "val1")
    kvasir_name, kvasir = native_frame(data / "kvasir-seg", "val")
    square = cv2.resize(busi, (256, 256), interpolation=cv2.INTER_AREA)
    options = {"threads": args.threads}
    host = Segmenter(work / "art" / "model.onnx", **options).__enter__()
    graph = Segmenter(work / "art" / "model.frames.onnx", **options).__enter__()
    print(f"CPU: {cpu_name()}; onnxruntime {ort.__version__}, {args.threads} threads; median of {args.iterations} "
          f"interleaved rounds after {args.warmup}\n")
    print("| frames | batch | Segmenter + model.onnx (ms) | model.frames.onnx (ms) | frames / host |")
    print("|---|---|---|---|---|")
    for name, frame in (("256x256", square), (busi_name, busi), (kvasir_name, kvasir)):
        for batch in (1, 8):
            frames = [frame] * batch
            times = interleaved_ms({"host": lambda: host.segment(frames), "graph": lambda: graph.segment(frames)},
                                   args.warmup, args.iterations)
            h, g = statistics.median(times["host"]), statistics.median(times["graph"])
            print(f"| {name} | {batch} | {h:.1f} | {g:.1f} | {g / h:.2f} |", flush=True)


if __name__ == "__main__":
    main()
