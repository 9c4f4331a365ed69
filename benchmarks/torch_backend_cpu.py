"""On the CPU: the checkpoint's own graph (eager, the authors' way) vs the torch backend running
the export's `model.pt2` (the folded deployment graph as a torch.export program).

Batch 1, FP32, `--threads` threads, runs interleaved (this VM's speed drifts), plus the largest
probability difference between the two on the same input.

Run: python -m benchmarks.torch_backend_cpu --checkpoint CKPT --pt2 ART/model.pt2 [--threads 2 --runs 12]
(ART from `llm4seg export CKPT --out ART --pt2`)
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from llm4seg.runtime.tools.bench import cpu_name
from llm4seg.runtime.core.stats import interleaved_ms

from llm4seg.runtime import load_backend


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--pt2", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import llm4seg

    model = llm4seg.load_checkpoint(args.checkpoint)

    class Eager:
        def infer(self, x):
            with torch.inference_mode():
                return torch.sigmoid(model(torch.from_numpy(x))).numpy()

    backends = {"checkpoint graph (authors' way)": Eager(),
                "folded deployment graph (model.pt2)": load_backend(args.pt2, "torch", device="cpu").load()}
    size = model.config.image_size
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    outputs = {name: b.infer(x) for name, b in backends.items()}  # also the warm-up
    times = interleaved_ms({name: lambda b=b: b.infer(x) for name, b in backends.items()}, 0, args.runs)
    base = statistics.median(times["checkpoint graph (authors' way)"])
    print(f"# {cpu_name()}, {args.threads} threads, torch {torch.__version__}, batch 1, {size}x{size}, "
          f"median of {args.runs} interleaved runs")
    print("| torch backend graph | ms | speed-up |")
    print("|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.1f} | {base / statistics.median(t):.2f}x |")
    a, b = outputs.values()
    print(f"max |probability difference|: {np.abs(a - b).max():.2e}")


if __name__ == "__main__":
    main()
