"""The torch backend's compiled forms: time to the first frame with a cold and with a warm cache
(each in a fresh process, as a restarted video service would be), then the steady per-call
latency of the uncompiled program, Inductor and the AOTInductor package timed in turns in one
process (fair ratios on a machine whose speed drifts).

Run: python -m benchmarks.compile_warm_start --pt2 ART/model.pt2 [--device cpu|cuda] [--batch 1]
(ART from `llm4seg export CKPT --out ART --pt2`). The cache goes to a fresh temporary folder.
On a device, after gpu_runtime.py --work W: --pt2 W/art/model.pt2 --device cuda --warm-only W/cache
(the warm start alone, from the package gpu_runtime.py compiled).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

FIRST_FRAME = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from llm4seg.runtime import load_backend
pt2, device, batch, compiler = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
b = load_backend(pt2, "torch", device=device, compile=False if compiler == "none" else compiler).load()
size = b.input_spec()["shape"][-1]
x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
b.infer(x)
print(json.dumps({"first_frame_s": time.perf_counter() - t0,
                  "cache_hit": (b.compile_info or {}).get("cache_hit")}))
"""

STEADY = r"""
import json, sys, time
import numpy as np
from llm4seg.runtime import load_backend
pt2, device, batch, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ways = {name: load_backend(pt2, "torch", device=device, compile=c).load()
        for name, c in (("none", False), ("inductor", "inductor"), ("aoti", "aoti"))}
size = ways["none"].input_spec()["shape"][-1]
x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
ref = ways["none"].infer(x)
times = {name: [] for name in ways}
for i in range(3 + rounds):
    for name, b in ways.items():
        t = time.perf_counter(); out = b.infer(x); ms = (time.perf_counter() - t) * 1e3
        if i >= 3:
            times[name].append(ms)
print(json.dumps({name: {"steady_ms": sorted(v)[len(v) // 2],
                         "max_abs_diff": float(np.abs(ways[name].infer(x) - ref).max())} for name, v in times.items()}))
"""


def child(code: str, args: list[str], env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pt2", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=30, help="timed calls per way in the steady comparison")
    p.add_argument("--warm-only", metavar="CACHE", default=None,
                   help="only the AOTInductor warm start from this existing $LLM4SEG_CACHE (e.g. the one "
                        "gpu_runtime.py --work filled): one fresh process, no compiling")
    args = p.parse_args()
    env = dict(os.environ, LLM4SEG_CACHE=args.warm_only or tempfile.mkdtemp(prefix="llm4seg-cache-"))
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    common = [args.pt2, args.device, str(args.batch)]
    if args.warm_only:
        row = child(FIRST_FRAME, [*common, "aoti"], env)
        print(json.dumps({"aoti, warm cache (new process)": row, "device": args.device, "batch": args.batch}))
        return
    rows = [("uncompiled program", child(FIRST_FRAME, [*common, "none"], env))]
    for compiler in ("inductor", "aoti"):
        rows.append((f"{compiler}, cold cache", child(FIRST_FRAME, [*common, compiler], env)))
        rows.append((f"{compiler}, warm cache (new process)", child(FIRST_FRAME, [*common, compiler], env)))
    steady = child(STEADY, [*common, str(args.rounds)], env)
    print(f"# {args.pt2}, device {args.device}, batch {args.batch}; first frames: each a fresh process")
    print("| way | first frame s (incl. imports, load, compile) |")
    print("|---|---:|")
    for name, r in rows:
        print(f"| {name} | {r['first_frame_s']:.1f} |")
    print(f"\n# steady state: one process, the three ways in turns, median of {args.rounds}")
    print("| way | steady ms per call | max abs diff vs uncompiled |")
    print("|---|---:|---:|")
    for name, r in steady.items():
        print(f"| {name} | {r['steady_ms']:.2f} | {r['max_abs_diff']:.1e} |")
    print(json.dumps({"first_frame": dict(rows), "steady": steady, "device": args.device, "batch": args.batch}))


if __name__ == "__main__":
    main()
