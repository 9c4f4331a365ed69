"""CPU latency of the authors' way (PyTorch eager FP32) beside each exported artifact in onnxruntime.

Run: python -m benchmarks.bench_export_cpu --checkpoint CKPT --data DIR --split val [--threads 2]
     python -m benchmarks.bench_export_cpu --model llm4seg_random --llm shape:llama-3.2-1b --data DIR ...
Batch 1 at the model's size, `--threads` threads for both; eager and every artifact are timed in
turns (median of --iterations rounds after warm-up), so this VM's drifting speed hits all alike.
With --data, also mask Dice against ground truth for the checkpoint and every artifact.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from llm4seg.runtime.tools.bench import cpu_name
from llm4seg.runtime.core.stats import interleaved_ms

import llm4seg
from llm4seg.errors import ExportError
from llm4seg.evaluate import predict_probs
from llm4seg.runtime.core.backends import load_backend
from llm4seg.runtime.core.comparator import Comparator, inputs_from_frames
from llm4seg.export.pipeline import ExportOptions, export_checkpoint
from llm4seg.data.datasets import load_dataset


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint")
    p.add_argument("--model", default="llm4seg_random")
    p.add_argument("--llm", default="shape:llama-3.2-1b")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default=None)
    p.add_argument("--calib-split", default=None, help="Split of --data for INT8 calibration (e.g. train1).")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--images", type=int, default=32, help="Held-out images for Dice.")
    p.add_argument("--int8-max-drop", type=float, default=0.005)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp())
    ckpt = Path(args.checkpoint) if args.checkpoint else llm4seg.save_checkpoint(
        llm4seg.create_model(args.model, llm=args.llm), work / "ckpt")
    model = llm4seg.load_checkpoint(ckpt)
    cfg = model.config
    data = load_dataset(args.data, args.split, cfg.image_size)
    held = slice(max(0, len(data) - args.images), len(data))
    frames = list(data.images[held])
    ref = predict_probs(model, data.images[held], torch.device("cpu"), batch_size=8)
    comparator = Comparator(frames, ref, cfg.threshold, data.masks[held])
    opts = ExportOptions(out=work / "art", fp16=True, int8=True, calib=args.data, calib_split=args.calib_split, data=args.data, split=args.split,
                         parity_images=args.images, max_int8_drop=args.int8_max_drop, latency_threads=args.threads)
    try:
        export_checkpoint(ckpt, opts, log=lambda s: print(s, file=sys.stderr))
    except ExportError as exc:  # the INT8 gate may refuse; FP32/FP16 are still there
        print(f"note: {exc.message}", file=sys.stderr)
    x1 = inputs_from_frames(load_backend(opts.out / "model.onnx"), frames[:1])
    x1_torch = torch.from_numpy(x1)
    base = comparator.run(load_backend(opts.out / "model.onnx"))[1]
    rows = [{"artifact": "PyTorch eager FP32 (authors' way)", "dice_vs_truth": base["reference_dice_vs_truth"],
             "dice_agreement": 1.0}]

    def eager_forward():
        with torch.inference_mode():
            model(x1_torch)

    timers = {rows[0]["artifact"]: eager_forward}
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx"):
        path = opts.out / name
        if not path.is_file():
            continue
        stats = comparator.run(load_backend(path))[1]
        backend = load_backend(path, threads=args.threads).load()
        timers[name] = lambda b=backend: b.infer(x1)
        rows.append({"artifact": name, "dice_vs_truth": stats["dice_vs_truth"], "dice_agreement": stats["dice_agreement"]})
    # 50 ms idle before each call: torch's and onnxruntime's spinning threads must not meet.
    for row, times in zip(rows, interleaved_ms(timers, args.warmup, args.iterations, gap_s=0.05).values()):
        row["ms"] = statistics.median(times)
    eager = rows[0]["ms"]
    print(f"# {cpu_name()}, {args.threads} threads, batch 1, {cfg.image_size}x{cfg.image_size}, model {cfg.name} "
          f"({cfg.block.source if cfg.block else 'no LLM'}), data {data.name} last {len(frames)} images, "
          f"median of {args.iterations} interleaved rounds")
    print("| artifact | ms | speed-up vs eager | Dice vs truth | Dice points lost | mask agreement |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        lost = 100 * (rows[0]["dice_vs_truth"] - r["dice_vs_truth"])
        print(f"| {r['artifact']} | {r['ms']:.1f} | {eager / r['ms']:.2f}x | {r['dice_vs_truth']:.4f} | {lost:+.2f} | "
              f"{r['dice_agreement']:.4f} |")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
