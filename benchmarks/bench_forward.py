"""Batch-1 CPU forward latency, parameters and MACs at 256x256 for the paper's model family.

Run: python -m benchmarks.bench_forward [--iterations N] [--json]
Prints a table of measured figures; copy them into benchmarks/RESULTS.md with the date.
"""

from __future__ import annotations

import argparse
import json

import torch

from llm4seg import create_model
from llm4seg.profile import model_report
from llm4seg.runtime.tools.bench import cpu_name

CASES = [
    ("baseline (CMUNeXt)", "cmunext", {}),
    ("+SmolLM2-135M layer 27 (pre-trained, frozen)", "llm4seg", {"llm": "smollm2"}),
    ("+LLaMA-3.2-1B-shaped layer 14 (random)", "llm4seg_random", {"llm": "shape:llama-3.2-1b"}),
    ("+DeepSeek-Qwen-1.5B-shaped layer (random)", "llm4seg_random", {"llm": "shape:deepseek-r1-distill-qwen-1.5b"}),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for label, name, overrides in CASES:
        torch.manual_seed(0)
        report = model_report(create_model(name, **overrides), iterations=args.iterations)
        rows.append({"case": label, **report})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"# CPU: {cpu_name()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, batch 1, 256x256, eager FP32, {args.iterations} iterations")
    print("| model | params total | trainable | frozen | GMACs | p50 ms | min ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        p, lat = r["params"], r["cpu_latency_ms"]
        print(f"| {r['case']} | {p['total'] / 1e6:.2f} M | {p['trainable'] / 1e6:.2f} M | {p['frozen'] / 1e6:.2f} M "
              f"| {r['macs'] / 1e9:.2f} | {lat['p50']:.1f} | {lat['min']:.1f} |")


if __name__ == "__main__":
    main()
