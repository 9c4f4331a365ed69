"""The torch backend with compile=True: time to the first frame with a cold and with a warm
compiled-form cache (each in a fresh process, as a restarted video service would be), and the
steady per-call latency against the uncompiled program, in one run.

Run: python benchmarks/compile_warm_start.py --pt2 ART/model.pt2 [--device cpu|cuda] [--batch 1]
(ART from `llm4seg export CKPT --out ART --pt2`). The cache goes to a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from llm4seg.runtime import load_backend
pt2, device, batch, compile_ = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
b = load_backend(pt2, "torch", device=device, compile=compile_).load()
size = b.input_spec()["shape"][-1]
x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
b.infer(x)
first = time.perf_counter() - t0
times = []
for _ in range(10):
    t = time.perf_counter(); b.infer(x); times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"first_frame_s": first, "steady_ms": sorted(times)[len(times) // 2]}))
"""


def child(pt2: str, device: str, batch: int, compiled: bool, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, pt2, device, str(batch), "1" if compiled else "0"],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pt2", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args()
    env = dict(os.environ, LLM4SEG_CACHE=tempfile.mkdtemp(prefix="llm4seg-cache-"))
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    rows = [("uncompiled program", child(args.pt2, args.device, args.batch, False, env)),
            ("compiled, cold cache", child(args.pt2, args.device, args.batch, True, env)),
            ("compiled, warm cache (new process)", child(args.pt2, args.device, args.batch, True, env))]
    print(f"# {args.pt2}, device {args.device}, batch {args.batch}; each row a fresh process")
    print("| way | first frame s (incl. imports, load, compile) | steady ms per call |")
    print("|---|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['first_frame_s']:.1f} | {r['steady_ms']:.1f} |")


if __name__ == "__main__":
    main()
