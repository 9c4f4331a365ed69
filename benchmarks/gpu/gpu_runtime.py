"""Prepared GPU check (device tool): runtime latency and throughput, LLaMA-1B-shaped model.

In one run, numpy in and numpy out: the authors' way (torch eager FP32), the issue's one-line
baseline `torch.compile(model.half().to(memory_format=torch.channels_last), mode="reduce-overhead")`, the torch backend running the
export's `model.pt2` (FP16 autocast; + CUDA graph, NCHW or channels_last; compiled by Inductor or
as an AOTInductor package, with and without a CUDA graph around it), device tensors in/out, and
onnxruntime (whatever providers exist there; the device image has the CPU one only), at batch 1
and at a large batch. Every row also reports its seconds to the first result (load, compile,
first call; a compiled form cached by the batch-1 pass is a cache hit at the large batch) and the Dice agreement of its
masks (at 0.5) with the eager FP32 masks on the same frames. Targets on an H100/H200:
<= 0.5 ms/frame at batch 1 (>= 2x the one-liner), >= 5000 img/s at large batch, agreement
>= 0.999. Writes gpu_runtime.json under --out and prints the table.

Run there (from the assembled package, see gpu_session.py): python3 -m benchmarks.gpu.gpu_runtime --out $OUT
Smoke here: python -m benchmarks.gpu.gpu_runtime --device cpu --image-size 64 --large-batch 4 --iterations 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import llm4seg
from llm4seg.fileio import write_json_atomic
from llm4seg.runtime import load_backend

from llm4seg.runtime.core.comparator import mask_agreement
from llm4seg.runtime.core.stats import median_ms


def one_liner(model, device: str):
    """The issue's baseline: what a user gets from one line of torch.compile (numpy in and out), in
    the form measured on 2026-11-28 (field notes: FP16, channels_last, reduce-overhead; 1.12 ms)."""
    compiled = torch.compile(model.half().to(memory_format=torch.channels_last),
                             mode="reduce-overhead" if device == "cuda" else "default")

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            xt = torch.from_numpy(x).to(device).half().contiguous(memory_format=torch.channels_last)
            return torch.sigmoid(compiled(xt)).float().cpu().numpy()

    return run


def backend_ways(pt2: Path, device: str, cuda: bool):
    """(name, options) for each torch backend configuration timed."""
    precision = "FP16 autocast" if cuda else "FP32"
    ways = [(f"torch backend {precision}, NCHW", {"channels_last": False}),
            (f"torch backend {precision} + CUDA graph, NCHW", {"cuda_graph": True, "channels_last": False}),
            (f"torch backend {precision} + CUDA graph, channels_last", {"cuda_graph": True, "channels_last": True}),
            (f"torch backend {precision}, Inductor (reduce-overhead on GPU)", {"compile": "inductor"}),
            (f"torch backend {precision}, AOTInductor package", {"compile": "aoti"}),
            (f"torch backend {precision}, AOTInductor package + CUDA graph", {"compile": "aoti", "cuda_graph": True}),
            (f"torch backend {precision} + CUDA graph, channels_last, copies overlapped in chunks of 64",
             {"cuda_graph": True, "channels_last": True, "overlap_chunk": 64}),
            (f"torch backend {precision}, AOTInductor package, copies overlapped in chunks of 64",
             {"compile": "aoti", "overlap_chunk": 64})]
    return [(name, opts) for name, opts in ways if cuda or not (opts.get("cuda_graph") or opts.get("overlap_chunk"))]


def timed(name: str, batch: int, fn, x: np.ndarray, reference: np.ndarray, args, sync, setup_s: float = 0.0) -> dict:
    """One way's row; ready_s = setup (load, ahead-of-time compile) + the first call (where lazy
    ways such as torch.compile compile)."""
    t = time.perf_counter()
    probs = fn(x)
    first_s = time.perf_counter() - t
    ms = median_ms(lambda: fn(x), args.warmup, args.iterations, sync)
    row = {"way": name, "batch": batch, "ms": ms, "setup_s": setup_s, "first_call_s": first_s,
           "ready_s": setup_s + first_s, "mask_agreement_dice": mask_agreement(list(reference[:, 0] > 0.5), list(probs[:, 0] > 0.5))}
    print(json.dumps(row), flush=True)
    return row


def attempt(results: list[dict], name: str, batch: int, measure) -> None:
    """One way's row, or a row naming its error: one failing way must not cost the others' figures."""
    try:
        results.append(measure())
    except Exception as exc:  # any failure of a way is a result to report, not a reason to stop
        results.append({"way": name, "batch": batch, "error": f"{type(exc).__name__}: {exc}"[:500]})
        print(json.dumps(results[-1]), flush=True)


def backend_row(pt2: Path, name: str, opts: dict, batch: int, x: np.ndarray, reference: np.ndarray, args, sync) -> dict:
    t = time.perf_counter()
    with load_backend(pt2, "torch", device=args.device, **opts) as b:
        row = timed(name, batch, b.infer, x, reference, args, sync, setup_s=time.perf_counter() - t)
        row["compiled"] = {k: v for k, v in (b.compile_info or {}).items() if k in ("cache_hit", "compile_s")}
    return row


def device_tensor_row(pt2: Path, name: str, batch: int, x: np.ndarray, reference: np.ndarray, args, sync) -> dict:
    with load_backend(pt2, "torch", device=args.device, cuda_graph=True, channels_last=True) as b:
        xd = torch.from_numpy(x).to(b.device)  # frames already on the device: no host copies
        row = timed(name, batch, lambda _: b.infer_tensor(xd).cpu().numpy(), x, reference, args, sync)
        # the row above includes one device->host copy for the agreement; time without it:
        row["ms"] = median_ms(lambda: b.infer_tensor(xd), args.warmup, args.iterations, sync)
    return row


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu_runtime_out")
    p.add_argument("--device", default="cuda")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--large-batch", type=int, default=256)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--skip-onnx", action="store_true")
    p.add_argument("--work", default=None, help="folder for the export and the compile cache (kept; default: a temporary one)")
    args = p.parse_args()
    cuda = args.device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    os.environ["LLM4SEG_CACHE"] = str(work / "cache")  # cold compiles: the first pass reports them
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

        def authors(frames: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return torch.sigmoid(eager(torch.from_numpy(frames).to(args.device))).cpu().numpy()

        reference = authors(x)
        results.append(timed("authors: torch eager FP32", batch, authors, x, reference, args, sync))
        t = time.perf_counter()
        attempt(results, "torch.compile(model.half() channels_last, reduce-overhead) one-liner", batch, lambda: timed(
            "torch.compile(model.half() channels_last, reduce-overhead) one-liner", batch, one_liner(eager, args.device), x,
            reference, args, sync, setup_s=time.perf_counter() - t))
        eager = None  # free the model before the backend's runs
        for name, opts in backend_ways(pt2, args.device, cuda):
            attempt(results, name, batch, lambda: backend_row(pt2, name, opts, batch, x, reference, args, sync))
            save(results, args, cuda)
        name = "torch backend, device tensors in/out (infer_tensor), graph, channels_last"
        attempt(results, name, batch, lambda: device_tensor_row(pt2, name, batch, x, reference, args, sync))
    if not args.skip_onnx:
        with load_backend(work / "art" / "model.onnx", device="auto") as b:
            for batch in (1, min(args.large_batch, 16)):
                x = np.random.default_rng(0).standard_normal((batch, 3, args.image_size, args.image_size)).astype(np.float32)
                results.append({"way": f"onnxruntime {b.providers()[0]}", "batch": batch, "ready_s": float("nan"),
                                "ms": median_ms(lambda: b.infer(x), 2, max(3, args.iterations // 10))})
    save(results, args, cuda, final=True)


def save(results: list[dict], args, cuda: bool, final: bool = False) -> None:
    """Rewrites gpu_runtime.json (after every row, so a stage timeout keeps what ran); the table at the end."""
    for r in results:
        if "ms" in r:
            r["ms_per_image"] = r["ms"] / r["batch"]
            r["images_per_s"] = 1000 * r["batch"] / r["ms"]
    info = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "image_size": args.image_size, "complete": final, "results": results}
    write_json_atomic(Path(args.out) / "gpu_runtime.json", info)
    if not final:
        return
    lines = [f"LLaMA-1B-shaped model, {args.image_size}x{args.image_size}, {info['device']}, torch {info['torch']}",
             "| way | batch | ms per call | ms per image | images/s | ready s (load, compile, 1st call) | mask agreement |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['way']} | {r['batch']} | {r['ms']:.2f} | {r['ms_per_image']:.3f} | {r['images_per_s']:.0f} "
              f"| {r['ready_s']:.1f} | {r.get('mask_agreement_dice', float('nan')):.4f} |" if "ms" in r else
              f"| {r['way']} | {r['batch']} | failed: {r['error'][:120]} | | | | |" for r in results]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
