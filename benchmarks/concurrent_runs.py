"""Several training runs on one device at once: aggregate throughput for 1, 3 and 6 concurrent
`llm4seg train` processes (issue 10, item 2), side by side in one run.

Each level starts N identical runs (seeds 0..N-1, same data and settings) together and times the
wall from the first start to the last exit; aggregate images/s = N x epochs x training images /
wall. A GPU whose single run is launch-bound (its kernels leave it mostly idle) should scale
almost linearly until the kernels fill it. Writes concurrent_runs.json under --out.

Run there (device): python -m benchmarks.concurrent_runs --data /tmp/busi --split train1 --epochs 3 \
    --step-mode graph --out $OUT
Smoke here: python -m benchmarks.concurrent_runs --levels 1,2 --epochs 1 --image-size 32 --device cpu --out /tmp/c
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train_cmd(args: argparse.Namespace, seed: int, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "llm4seg.cli.main", "train", "--model", args.model, "--epochs", str(args.epochs),
           "--image-size", str(args.image_size), "--device", args.device, "--seed", str(seed), "--out", str(out),
           "--step-mode", args.step_mode, "--json"]
    cmd += ["--data", args.data, "--split", args.split] if args.data else ["--synthetic-count", str(args.synthetic_count)]
    return cmd + (["--llm", args.llm] if args.llm else [])


def level(args: argparse.Namespace, n: int, work: Path) -> dict:
    """N runs started together; returns wall seconds and the training images each run saw."""
    t = time.perf_counter()
    procs = [subprocess.Popen(train_cmd(args, seed, work / f"n{n}-s{seed}"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in range(n)]
    outputs = [p.communicate() for p in procs]
    wall_s = time.perf_counter() - t
    failed = [(p.returncode, err.strip().splitlines()[-1:]) for p, (_, err) in zip(procs, outputs) if p.returncode]
    if failed:
        sys.exit(f"{len(failed)} of {n} runs failed: {failed}")
    train_images = json.loads(outputs[0][0])["train_images"]
    return {"runs": n, "wall_s": wall_s, "train_images": train_images,
            "images_per_s": n * args.epochs * train_images / wall_s}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--levels", default="1,3,6")
    p.add_argument("--model", default="llm4seg")
    p.add_argument("--llm", default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--split", default="train1")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--synthetic-count", type=int, default=64)
    p.add_argument("--device", default="cuda")
    p.add_argument("--step-mode", default="eager")
    p.add_argument("--out", default="concurrent_out")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="llm4seg-concurrent-"))
    rows = []
    for n in (int(v) for v in args.levels.split(",")):
        rows.append(level(args, n, work))
        rows[-1]["scaling_vs_1"] = rows[-1]["images_per_s"] / rows[0]["images_per_s"]
        print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(work, ignore_errors=True)  # the runs' checkpoints: only the timings matter here
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "concurrent_runs.json").write_text(json.dumps({"settings": vars(args), "levels": rows}, indent=2))
    print(f"# {args.model}, {args.image_size}px, {args.epochs} epoch(s) per run, device {args.device}, "
          f"step mode {args.step_mode} (process start, data load and validation included)")
    print("| concurrent runs | wall s | aggregate train images/s | vs 1 run |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['runs']} | {r['wall_s']:.1f} | {r['images_per_s']:.1f} | {r['scaling_vs_1']:.2f}x |")


if __name__ == "__main__":
    main()
