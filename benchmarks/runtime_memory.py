"""Peak RSS of a runtime process serving one artifact on the CPU (no torch in the process).

Run: python -m benchmarks.runtime_memory ART/model.int8.onnx [--low-memory] [--frames 20]
Each configuration must run in its own process (peak RSS only grows), so run it once per option.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import numpy as np

from llm4seg.runtime import Segmenter, load_backend


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("artifact")
    p.add_argument("--low-memory", action="store_true")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    times = []
    with Segmenter(load_backend(args.artifact, threads=args.threads, low_memory=args.low_memory)) as seg:
        for _ in range(args.frames):
            t0 = time.perf_counter()
            seg.segment_one(frame)
            times.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({"artifact": args.artifact, "low_memory": args.low_memory, "frames": args.frames,
                      "frame_ms_p50": statistics.median(times[2:]),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "torch_loaded": "torch" in sys.modules}))


if __name__ == "__main__":
    main()
