"""Many concurrent frame streams against one artifact or server: aggregate frames/s, per-stream
latency percentiles and errors (`llm4seg bench --streams N`).

Each stream is an ordered loop like one probe's video: send a frame, wait for its mask, send the
next. Against a server (grpc:// or http://) every stream has its own Segmenter and connection,
as separate processes would; against a local artifact the streams share one Segmenter, as one
process serving several probes does. All streams start together (a barrier).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.runtime.core.backends import backend_for
from llm4seg.runtime.tools.bench import engine_name
from llm4seg.runtime.core.segmenter import Segmenter
from llm4seg.runtime.core.stats import percentiles_ms


def _stream(seg: Segmenter, frames: list[np.ndarray], offset: int, count: int, start: threading.Barrier,
            out: dict[str, Any]) -> None:
    latencies, errors, first_error = [], 0, None
    start.wait()
    t_begin = time.perf_counter()
    for k in range(count):
        frame = frames[(offset + k) % len(frames)]
        t0 = time.perf_counter()
        try:
            seg.segment_one(frame)
            latencies.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:  # counted, and the stream goes on: one lost frame is not a lost stream
            errors += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"
    out.update(latencies=latencies, errors=errors, first_error=first_error, t_begin=t_begin, t_end=time.perf_counter())


def bench_streams(engine: str | Path, frames: list[np.ndarray], streams: int, frames_per_stream: int,
                  layout: str = "rgb", warmup: int = 2, **backend_options: Any) -> dict[str, Any]:
    """Run `streams` concurrent ordered streams of `frames_per_stream` frames each.

    Args:
        backend_options: passed to every Segmenter's backend (e.g. shm_key_file= for a local server).

    Returns:
        {'engine', 'streams', 'frames_ok', 'errors', 'wall_s', 'fps' (aggregate), 'latency_ms'
        (all frames), 'per_stream': [{'p50', 'p99', 'n', 'errors', 'first_error'}]}
    """
    remote = backend_for(engine) == "triton"
    shared = None if remote else Segmenter(engine, layout=layout, **backend_options).__enter__()
    segs = [Segmenter(str(engine), layout=layout, **backend_options).__enter__() if remote else shared
            for _ in range(streams)]
    try:
        for seg in {id(s): s for s in segs}.values():
            for i in range(warmup):
                seg.segment_one(frames[i % len(frames)])
        results: list[dict[str, Any]] = [{} for _ in range(streams)]
        barrier = threading.Barrier(streams)
        threads = [threading.Thread(target=_stream, args=(segs[i], frames, i * 7, frames_per_stream, barrier, results[i]),
                                    daemon=True) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for seg in {id(s): s for s in segs}.values():
            seg.close()
    wall_s = max(r["t_end"] for r in results) - min(r["t_begin"] for r in results)
    ok = sum(len(r["latencies"]) for r in results)
    per_stream = [{**{k: v for k, v in percentiles_ms(r["latencies"]).items() if k in ("n", "p50", "p99")},
                   "errors": r["errors"], "first_error": r["first_error"]} for r in results]
    return {"engine": engine_name(engine, segs[0]), "where": "server" if remote else "in-process", "streams": streams,
            "frames_ok": ok, "errors": sum(r["errors"] for r in results), "wall_s": wall_s,
            "fps": ok / wall_s if wall_s > 0 else 0.0,
            "latency_ms": percentiles_ms([x for r in results for x in r["latencies"]]), "per_stream": per_stream}
