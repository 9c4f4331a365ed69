"""`llm4seg bench --streams`: run the stream benchmark per engine and stream count, and show it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llm4seg.cli.render import print_json, print_table, stdout


def run_streams(engines: list[Path], images: list[np.ndarray], streams: list[int], frames_per_stream: int,
                out: Path | None, json_out: bool) -> None:
    """Each stream count, each engine in turn (so a drifting machine hits them alike)."""
    from llm4seg.errors import ConfigError
    from llm4seg.runtime.tools.bench import machine_info
    from llm4seg.runtime.tools.bench_streams import bench_streams

    bad = [n for n in [*streams, frames_per_stream] if n < 1]
    if bad:
        raise ConfigError(f"--streams and --stream-frames must be at least 1, got {bad[0]}", hint="e.g. --streams 4")
    results = [bench_streams(e, images, n, frames_per_stream) for n in streams for e in engines]
    payload = {"machine": machine_info(), "frames_per_stream": frames_per_stream, "results": results}
    if out:
        from llm4seg.fileio import write_json_atomic

        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "bench.json", payload)
    if json_out:
        print_json(payload)
        return
    rows = []
    for r in results:
        p50 = float(np.median([s["p50"] for s in r["per_stream"] if s.get("n")])) if r["frames_ok"] else float("nan")
        p99 = max((s["p99"] for s in r["per_stream"] if s.get("n")), default=float("nan"))
        rows.append([r["engine"], r["where"], str(r["streams"]), f"{r['fps']:.1f}", f"{p50:.1f}", f"{p99:.1f}",
                     str(r["errors"])])
    print_table(f"{frames_per_stream} frames per stream, on {payload['machine'].get('cpu')}",
                ["engine", "where", "streams", "frames/s (all)", "p50 ms (median stream)", "p99 ms (worst stream)",
                 "errors"], rows)
    for r in results:
        first = next((s["first_error"] for s in r["per_stream"] if s["first_error"]), None)
        if first:
            stdout.print(f"{r['engine']} x{r['streams']}: first error: {first}", soft_wrap=True, markup=False)
