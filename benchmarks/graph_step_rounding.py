"""How far `--step-mode graph` drifts from torch's SGD on the CPU, per kernel set and thread count.

Each configuration runs in its own process (ATEN_CPU_CAPABILITY is read when torch starts):
  1. three steps of GraphedStep beside torch.optim.SGD from the same weights and batches: the
     largest parameter difference after each step;
  2. the README test's training curves (cmunext_s, 32 px, 3 epochs, batch 4): eager vs graph,
     relative difference of each epoch's mean loss.
Run: python -m benchmarks.graph_step_rounding [--capabilities default,avx2] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def one_configuration() -> dict:
    import copy

    import torch

    import llm4seg
    from llm4seg.training.config import TrainConfig
    from llm4seg.training.graphed_step import GraphedStep
    from llm4seg.training.losses import bce_dice_loss
    from llm4seg.training.run import train

    torch.manual_seed(0)
    eager = llm4seg.create_model("cmunext_s", image_size=32).train()
    graphed = copy.deepcopy(eager)
    settings = dict(lr=0.01, momentum=0.9, weight_decay=1e-4)
    opt = torch.optim.SGD([p for p in eager.parameters() if p.requires_grad], **settings)
    step = GraphedStep(graphed, torch.optim.SGD([p for p in graphed.parameters() if p.requires_grad], **settings),
                       (4, 3, 32, 32), (4, 1, 32, 32), torch.device("cpu"), amp=False)
    steps = []
    for _ in range(3):
        x, y = torch.randn(4, 3, 32, 32), torch.rand(4, 1, 32, 32) > 0.5
        loss = bce_dice_loss(eager(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step(x, y, 0.01)
        steps.append(max(float((a - b).detach().abs().max()) for a, b in zip(eager.parameters(), graphed.parameters())))
    tmp = Path(tempfile.mkdtemp())
    base = dict(model="cmunext_s", image_size=32, epochs=3, batch_size=4, synthetic_count=20, device="cpu", seed=5,
                checkpoint_every_s=0.0)
    train(TrainConfig(out=str(tmp / "eager"), **base))
    train(TrainConfig(out=str(tmp / "graph"), step_mode="graph", **base))
    curve = [[json.loads(r)["train_loss"] for r in (tmp / run / "metrics.jsonl").read_text().splitlines()]
             for run in ("eager", "graph")]
    rel = [abs(a - b) / abs(a) for a, b in zip(*curve)]
    return {"param_diff_per_step": steps, "curve_rel_diff": rel, "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--capabilities", default="default,avx2")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(one_configuration()))
        return
    print("| ATEN_CPU_CAPABILITY | threads | max param diff after steps 1 / 2 / 3 | curve rel. diff per epoch |")
    print("|---|---:|---|---|")
    for cap in args.capabilities.split(","):
        for threads in args.threads.split(","):
            env = dict(os.environ, ATEN_CPU_CAPABILITY=cap, OMP_NUM_THREADS=threads)
            out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"| {cap} | {threads} | {' / '.join(f'{v:.2e}' for v in r['param_diff_per_step'])} | "
                  f"{' / '.join(f'{100 * v:.3f} %' for v in r['curve_rel_diff'])} |")


if __name__ == "__main__":
    main()
