"""Prepared GPU check (device tool): runtime latency and throughput, LLaMA-1B-shaped model.

In one run: the authors' way (torch eager FP32), the torch backend running the export's
`model.pt2` with FP16 autocast (+ CUDA graph, NCHW or channels_last), and onnxruntime (whatever providers exist there; the device image has the CPU one only), at
batch 1 and at a large batch. Targets on an H100/H200: <= 0.5 ms/frame at batch 1 and
>= 5000 img/s at large batch. Writes gpu_runtime.json under --out and prints the table.

Run there:  PYTHONPATH=. python benchmarks/gpu_runtime.py --out $OUT
Smoke here: python benchmarks/gpu_runtime.py --device cpu --image-size 64 --large-batch 4 --iterations 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import llm4seg
from llm4seg.runtime import load_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu_runtime_out")
    p.add_argument("--device", default="cuda")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--large-batch", type=int, default=256)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--skip-onnx", action="store_true")
    args = p.parse_args()
    cuda = args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    work = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    ckpt = llm4seg.save_checkpoint(llm4seg.create_model("llm4seg_random", llm="shape:llama-3.2-1b",
                                                        image_size=args.image_size), work / "ckpt")
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint

    export_checkpoint(ckpt, ExportOptions(out=work / "art", parity_images=4, pt2=True,
                                          batch=(1, 1, max(args.large_batch, 16))), log=print)
    pt2 = work / "art" / "model.pt2"
    results = []
    for batch in (1, args.large_batch):
        x = np.random.default_rng(0).standard_normal((batch, 3, args.image_size, args.image_size)).astype(np.float32)
        eager = llm4seg.load_checkpoint(ckpt, device=args.device)
        xt = torch.from_numpy(x).to(args.device)
        with torch.inference_mode():
            ms = median_ms(lambda: torch.sigmoid(eager(xt)), args.warmup, args.iterations, sync)
        results.append({"way": "authors: torch eager FP32", "batch": batch, "ms": ms})
        eager = None  # free the FP32 model before the backend's runs
        variants = ((False, True), (True, False), (True, True))
        for graph, nhwc in variants:
            with load_backend(pt2, "torch", device=args.device, cuda_graph=graph, channels_last=nhwc) as b:
                ms = median_ms(lambda: b.infer(x), args.warmup, args.iterations, sync)
            results.append({"way": f"torch backend model.pt2 {'FP16 autocast' if cuda else 'FP32'}"
                                   f"{' + CUDA graph' if graph and cuda else ''}, {'channels_last' if nhwc else 'NCHW'}",
                            "batch": batch, "ms": ms})
        with load_backend(pt2, "torch", device=args.device, cuda_graph=True, channels_last=True) as b:
            xd = torch.from_numpy(x).to(b.device)  # frames already on the device: no host copies
            ms = median_ms(lambda: b.infer_tensor(xd), args.warmup, args.iterations, sync)
        results.append({"way": "torch backend model.pt2, device tensors in/out (infer_tensor), graph, channels_last",
                        "batch": batch, "ms": ms})
        print(json.dumps(results[-len(variants) - 1:]), flush=True)
    if not args.skip_onnx:
        with load_backend(work / "art" / "model.onnx", device="auto") as b:
            for batch in (1, min(args.large_batch, 16)):
                x = np.random.default_rng(0).standard_normal((batch, 3, args.image_size, args.image_size)).astype(np.float32)
                results.append({"way": f"onnxruntime {b.providers()[0]}", "batch": batch,
                                "ms": median_ms(lambda: b.infer(x), 2, max(3, args.iterations // 10))})
    for r in results:
        r["ms_per_image"] = r["ms"] / r["batch"]
        r["images_per_s"] = 1000 * r["batch"] / r["ms"]
    info = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "image_size": args.image_size, "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_runtime.json").write_text(json.dumps(info, indent=2))
    lines = [f"LLaMA-1B-shaped model, {args.image_size}x{args.image_size}, {info['device']}, torch {info['torch']}",
             "| way | batch | ms per call | ms per image | images/s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['way']} | {r['batch']} | {r['ms']:.2f} | {r['ms_per_image']:.3f} | {r['images_per_s']:.0f} |" for r in results]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
