"""Where the GPU time goes (device tool): LLaMA-1B-shaped model, FP16 inference and a bf16 train step.

1. Inference on device-resident tensors (no host copies), batch 1 under a CUDA graph and a large
   batch, for memory layouts NCHW vs channels_last, with cudnn.benchmark on: separates the
   model's own GPU time from the runtime's host<->device copies.
2. torch.profiler: the top CUDA kernels of one large-batch FP16 forward and of one training step.
Writes gpu_profile.json (+ the kernel tables in it) under --out and prints everything.

Run there: python3 -m benchmarks.gpu.gpu_profile --out $OUT
Smoke here: python -m benchmarks.gpu.gpu_profile --device cpu --image-size 64 --large-batch 2 --iterations 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import llm4seg
from llm4seg.training.losses import bce_dice_loss

from llm4seg.runtime.core.stats import median_ms


def graphed(fn, x):
    """A CUDA graph of fn on a static input; returns the replay callable."""
    static = x.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn(static)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn(static)
    return g.replay


def kernel_table(fn, device, rows: int = 15) -> str:
    acts = [torch.profiler.ProfilerActivity.CPU]
    sorts = ["self_cpu_time_total"]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
        sorts = ["self_device_time_total", "self_cuda_time_total"]  # the name changed across torch versions
    fn()
    with torch.profiler.profile(activities=acts) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    averages = prof.key_averages()
    for sort in sorts:
        try:
            return averages.table(sort_by=sort, row_limit=rows, max_name_column_width=70)
        except (AttributeError, KeyError, ValueError):
            continue
    return averages.table(row_limit=rows, max_name_column_width=70)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu_profile_out")
    p.add_argument("--device", default="cuda")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--large-batch", type=int, default=256)
    p.add_argument("--iterations", type=int, default=20)
    args = p.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    base = llm4seg.create_model("llm4seg_random", llm="shape:llama-3.2-1b", image_size=args.image_size)
    dtype = torch.float16 if cuda else torch.float32
    results, tables = [], {}
    for layout in ("nchw", "channels_last"):
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        model = base.to(device).to(dtype).eval().to(memory_format=fmt)
        for batch in (1, args.large_batch):
            x = torch.randn(batch, 3, args.image_size, args.image_size, device=device, dtype=dtype)
            x = x.contiguous(memory_format=fmt)
            with torch.inference_mode():
                fwd = lambda t: torch.sigmoid(model(t).float())  # noqa: E731
                ms = median_ms(lambda: fwd(x), 3, args.iterations, sync)
                results.append({"layout": layout, "batch": batch, "cuda_graph": False, "ms": ms})
                if cuda:
                    replay = graphed(fwd, x)
                    ms = median_ms(replay, 3, args.iterations, sync)
                    results.append({"layout": layout, "batch": batch, "cuda_graph": True, "ms": ms})
            print(json.dumps(results[-2:]), flush=True)
        with torch.inference_mode():
            xb = torch.randn(min(64, args.large_batch), 3, args.image_size, args.image_size, device=device,
                             dtype=dtype).contiguous(memory_format=fmt)
            tables[f"forward_{layout}_batch{xb.shape[0]}"] = kernel_table(lambda: model(xb), device)
    for r in results:
        r["ms_per_image"] = r["ms"] / r["batch"]
        r["images_per_s"] = 1000 * r["batch"] / r["ms"]
    # One training step (bf16 autocast, channels_last), as `llm4seg train` runs it on CUDA.
    model = base.float().to(device).train().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=0.01, momentum=0.9)
    xt = torch.randn(8, 3, args.image_size, args.image_size, device=device).contiguous(memory_format=torch.channels_last)
    yt = (torch.rand(8, 1, args.image_size, args.image_size, device=device) > 0.5).float()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = bce_dice_loss(model(xt), yt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_ms = median_ms(step, 3, args.iterations, sync)
    tables["train_step_batch8"] = kernel_table(step, device)
    info = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "image_size": args.image_size, "inference": results,
            "train_step_ms": train_ms, "kernel_tables": tables}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_profile.json").write_text(json.dumps(info, indent=2))
    print(f"{info['device']}, torch {info['torch']}; device-resident tensors, {args.image_size}x{args.image_size}")
    print("| layout | batch | CUDA graph | ms per call | ms per image | images/s |")
    print("|---|---:|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['layout']} | {r['batch']} | {r['cuda_graph']} | {r['ms']:.2f} | {r['ms_per_image']:.3f} | "
              f"{r['images_per_s']:.0f} |")
    print(f"train step (batch 8, bf16, channels_last, no compile): {train_ms:.1f} ms")
    for name, table in tables.items():
        print(f"\n## {name}\n{table}")


if __name__ == "__main__":
    main()
