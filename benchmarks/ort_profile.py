"""Where an ONNX artifact's time goes on this CPU: onnxruntime's profiler, by model part and op type.

    python -m benchmarks.ort_profile ART/model.onnx [ART/model.int8.onnx ...] [--runs 4] [--threads 2]

Each graph runs `--runs` profiled inferences at batch 1 on a seeded input (after one warm-up
call, which is dropped); kernel times (`SessionOptions.enable_profiling`, "Node" events) are
summed per run and averaged. Parts are the first component of the node names the exporter
writes (`/encoder/...`, `/block/...` = the LLM block, `/decoder/...`), "other" for the rest.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

PARTS = {"encoder": "encoder", "block": "LLM block", "decoder": "decoder"}


def part_of(node_name: str) -> str:
    return PARTS.get(node_name.strip("/").split("/")[0], "other")


def profile(path: Path, runs: int, threads: int) -> dict:
    """{'kernels_ms', 'by_part', 'by_op'}, each the mean over `runs` profiled calls."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="ort_profile_")) / "run")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in spec.shape]
    dtype = np.float16 if "float16" in spec.type else np.float32
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    for _ in range(runs + 1):
        session.run(None, {spec.name: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    # One "model_run" event per call: node events between its start and end belong to it.
    calls = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[1:]
    by_part, by_op = defaultdict(float), defaultdict(float)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        if not any(a <= e["ts"] <= b for a, b in calls):
            continue
        ms = e["dur"] / 1000.0 / len(calls)
        by_part[part_of(e["name"][: -len("_kernel_time")])] += ms
        by_op[e["args"].get("op_name", "?")] += ms
    return {"kernels_ms": sum(by_op.values()), "by_part": dict(by_part),
            "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graphs", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=6, help="op types listed per graph")
    args = parser.parse_args()
    for graph in args.graphs:
        p = profile(graph, args.runs, args.threads)
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(p["by_part"].items(), key=lambda kv: -kv[1]))
        ops = ", ".join(f"{k} {v:.1f}" for k, v in list(p["by_op"].items())[: args.top])
        print(f"{graph} ({p['kernels_ms']:.1f} ms of kernels, mean of {args.runs} runs, {args.threads} threads)")
        print(f"  by part: {parts}")
        print(f"  by op:   {ops}")


if __name__ == "__main__":
    main()
