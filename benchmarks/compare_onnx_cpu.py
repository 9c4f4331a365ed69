"""Batch-1 CPU latency of several ONNX graphs, runs interleaved so machine noise hits all alike.

Run: python benchmarks/compare_onnx_cpu.py ART17/model.onnx ART23/model.onnx [--threads 2 --runs 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import cpu_name  # noqa: E402
from timing import interleaved_ms  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("graphs", nargs="+")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sessions = {g: ort.InferenceSession(g, opts, providers=["CPUExecutionProvider"]) for g in args.graphs}
    runs = {}
    for g, s in sessions.items():
        first = s.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in first.shape])
        runs[g] = lambda s=s, feed={first.name: x.astype(np.float32)}: s.run(None, feed)
    times = interleaved_ms(runs, args.warmup, args.runs)
    print(f"# {cpu_name()}, {args.threads} threads, onnxruntime {ort.__version__}, batch 1, "
          f"median of {args.runs} interleaved runs")
    print("| graph | median ms | min ms |")
    print("|---|---:|---:|")
    for g, t in times.items():
        print(f"| {g} | {statistics.median(t):.1f} | {min(t):.1f} |")


if __name__ == "__main__":
    main()
