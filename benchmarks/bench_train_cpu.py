"""CPU training step time, batch 8 at 256x256: the authors' way beside this project's way.

Run: python -m benchmarks.bench_train_cpu [--iterations N] [--image-size 256]
Models: baseline CMUNeXt, +SmolLM2 layer (pre-trained, frozen), +LLaMA-1B-shaped layer (random,
frozen). Data: the synthetic set (the step cost does not depend on the pixels).
"""

from __future__ import annotations

import argparse

import torch

from llm4seg.runtime.tools.bench import cpu_name
from benchmarks.train_ways import make_authors_step, make_project_step, time_steps

from llm4seg import create_model
from llm4seg.data.synthetic import synthetic_dataset

CASES = [
    ("baseline (CMUNeXt)", "cmunext", {}),
    ("+SmolLM2 layer (frozen)", "llm4seg", {"llm": "smollm2"}),
    ("+LLaMA-1B-shaped layer (random, frozen)", "llm4seg_random", {"llm": "shape:llama-3.2-1b"}),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    device = torch.device("cpu")
    images, masks, _ = synthetic_dataset(32, args.image_size, seed=0)
    print(f"# {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, batch {args.batch}, "
          f"{args.image_size}x{args.image_size}, median of {args.iterations} steps after {args.warmup} warm-up")
    print("| model | authors' way ms/step | this project ms/step | ratio |")
    print("|---|---:|---:|---:|")
    for label, name, overrides in CASES:
        torch.manual_seed(0)
        model = create_model(name, image_size=args.image_size, **overrides).train()
        authors = time_steps("authors", make_authors_step(model, images, masks, args.batch, device),
                             args.warmup, args.iterations, device)
        ours = time_steps("project", make_project_step(model, images, masks, args.batch, device, False, False),
                          args.warmup, args.iterations, device)
        print(f"| {label} | {authors.median_ms:.0f} | {ours.median_ms:.0f} | {authors.median_ms / ours.median_ms:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
