"""Prepared GPU check (device tool): BUSI split 1 training speed, LLaMA-1B-shaped layer.

Measures iterations per second of this project's training step (bf16 autocast, channels_last,
data and augmentation on the GPU, with and without torch.compile) beside the authors' way
(eager FP32, per-sample CPU augmentation), plus the on-device validation pass, and projects
the minutes a full 300-epoch run takes (steps per epoch = 452 // 8 = 56, validation each epoch).
Writes gpu_train.json under --out and prints the table.

Run there (from the assembled package, see gpu_session.py): python3 -m benchmarks.gpu.gpu_train_busi --npz busi_256.npz --out $OUT
Smoke test here (CPU): python -m benchmarks.gpu.gpu_train_busi --npz ... --device cpu --iterations 2 --warmup 1
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from benchmarks.train_ways import make_authors_step, make_project_step, time_steps

from llm4seg import create_model
from llm4seg.training.val_metrics import validate_on_device

EPOCHS, BATCH = 300, 8


def load_npz(path: str):
    """Split 1's train and val arrays from device_dataset.py's pack (every split: one carry serves
    this script and the comparison slots)."""
    from benchmarks.gpu.device_dataset import split_arrays

    return (*split_arrays(Path(path), "train1"), *split_arrays(Path(path), "val1"))


def validation_seconds(model, images, masks, device, amp: bool) -> float:
    imgs = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
    msks = torch.from_numpy(masks)[:, None].to(device)
    validate_on_device(model, imgs, msks, amp=amp)  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    validate_on_device(model, imgs, msks, amp=amp)
    sync()
    return time.perf_counter() - t0


def run_case(name, build, steps_fn, images, masks, val_images, val_masks, args, device, amp):
    model = build()
    times = time_steps(name, steps_fn(model), args.warmup, args.iterations, device)
    val_s = validation_seconds(model, val_images, val_masks, device, amp)
    steps_per_epoch = len(images) // BATCH
    minutes = EPOCHS * (steps_per_epoch / times.it_per_s + val_s) / 60
    return {"way": name, "it_per_s": times.it_per_s, "step_ms_median": times.median_ms, "val_s": val_s,
            "minutes_300_epochs": minutes, "steps_per_epoch": steps_per_epoch}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--npz", required=True)
    parser.add_argument("--out", default="gpu_out")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--ways", default="authors,project,graph,compile",
                        help="Comma-separated subset of authors, project, graph, compile (a time-boxed session splits them).")
    parser.add_argument("--json-name", default="gpu_train.json")
    parser.add_argument("--limit", type=int, default=0, help="Use only the first N train and val images (smoke tests).")
    args = parser.parse_args()
    device = torch.device(args.device)
    images, masks, val_images, val_masks = load_npz(args.npz)
    if args.limit:
        images, masks, val_images, val_masks = (a[: args.limit] for a in (images, masks, val_images, val_masks))
    torch.backends.cudnn.benchmark = True

    def build(channels_last=False):
        torch.manual_seed(0)
        m = create_model("llm4seg_random", llm="shape:llama-3.2-1b").to(device).train()
        return m.to(memory_format=torch.channels_last) if channels_last else m

    cuda = device.type == "cuda"
    all_cases = {
        "authors": ("authors (eager FP32, CPU per-sample aug)", build,
                    lambda m: make_authors_step(m, images, masks, BATCH, device), False),
        "project": ("project (bf16, channels_last, GPU data)", lambda: build(cuda),
                    lambda m: make_project_step(m, images, masks, BATCH, device, True, cuda), True),
        "graph": ("project + whole step as a CUDA graph (--step-mode graph)", lambda: build(cuda),
                  lambda m: make_project_step(m, images, masks, BATCH, device, True, cuda, graph=True), True),
        "compile": ("project + torch.compile", lambda: build(cuda),
                    lambda m: make_project_step(torch.compile(m), images, masks, BATCH, device, True, cuda), True),
    }
    ways = [w.strip() for w in args.ways.split(",") if w.strip() and not (args.no_compile and w.strip() == "compile")]
    unknown = [w for w in ways if w not in all_cases]
    if unknown:
        parser.error(f"--ways: unknown {unknown}; expected a subset of {sorted(all_cases)}")
    cases = [all_cases[w] for w in ways]
    results = []
    for name, b, steps_fn, amp in cases:
        r = run_case(name, b, steps_fn, images, masks, val_images, val_masks, args, device, amp)
        print(json.dumps(r), flush=True)
        results.append(r)
    info = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "n_train": len(images), "n_val": len(val_images), "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / args.json_name).write_text(json.dumps(info, indent=2))
    lines = [f"BUSI split 1, LLaMA-1B-shaped layer, batch {BATCH}, 256x256 on {info['device']}, torch {info['torch']}",
             "| way | it/s | ms/step | val s/epoch | minutes for 300 epochs |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['way']} | {r['it_per_s']:.1f} | {r['step_ms_median']:.1f} | {r['val_s']:.2f} | {r['minutes_300_epochs']:.1f} |"
              for r in results]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
