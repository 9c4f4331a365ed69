"""Benchmark artifacts side by side: latency percentiles per batch, throughput, stage breakdown,
peak memory, and (with data) Dice/IoU against masks and agreement with the first artifact."""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.runtime.core.backends import backend_for, load_backend
from llm4seg.runtime.core.comparator import agreement, score
from llm4seg.runtime.core.segmenter import Segmenter
from llm4seg.runtime.core.stats import percentiles_ms


def cpu_name() -> str:
    """This machine's CPU model (from /proc/cpuinfo on Linux), for reports and benchmark headers."""
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Platform, Python, CPU model and threads, and the onnxruntime/tensorrt versions of this machine."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_threads": os.cpu_count(), "cpu": cpu_name()}
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    return info


def torch_loaded() -> bool:
    """True when torch has been imported into this process (a runtime-only check)."""
    import sys

    return "torch" in sys.modules


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _time_once(seg: Segmenter, chunk: list[np.ndarray]) -> tuple[float, float, float]:
    """(preprocess, inference, postprocess) milliseconds for one batch (a server's `segment` model
    does all three remotely, a frames graph inside itself: their time is counted as inference)."""
    t0 = time.perf_counter()
    runner = seg.runner
    if runner.kind != "host":
        seg.segment(chunk)
        return 0.0, (time.perf_counter() - t0) * 1e3, 0.0
    rgbs = [runner.rgb(f) for f in chunk]
    x = [runner.tensor(r) for r in rgbs]
    t1 = time.perf_counter()
    probs = runner.infer_inputs(x)
    t2 = time.perf_counter()
    for p, r in zip(probs, rgbs):
        seg.contract.mask_from_prob(seg.contract.prob_at_size(p, r.shape[:2]))
    t3 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3


def engine_name(path: Path | str, seg: Segmenter) -> str:
    """How reports name an engine: a served model by its address (with '//', which pathlib drops),
    an artifact by its path."""
    return getattr(seg.backend, "url", None) or str(path)


def backend_options(path: Path, compile: str | None) -> dict[str, Any]:  # noqa: A002
    """Options for the artifact's backend: `compile` applies to `.pt2` programs (the torch backend)."""
    return {"compile": compile} if compile and backend_for(path) == "torch" else {}


def _compiled(seg: Segmenter) -> dict[str, Any] | None:
    info = getattr(seg.backend, "compile_info", None)
    if not info:
        return None
    return {"compiler": info["compiler"], "cache_hit": info.get("cache_hit"), "compile_s": info.get("compile_s")}


def _row(path: Path, seg: Segmenter, batch: int, times: list[tuple[float, float, float]], rss_scope: str) -> dict[str, Any]:
    pre, inf, post = (list(c) for c in zip(*times))
    lat = percentiles_ms([a + b + c for a, b, c in times])
    return {"artifact": engine_name(path, seg), "backend": seg.backend.name, "compiled": _compiled(seg),
            "precision": seg.entry.precision,
            "batch": batch, "latency_ms": lat, "throughput_ips": batch * 1000.0 / lat["mean"],
            "breakdown_ms": {"preprocess": percentiles_ms(pre)["p50"], "inference": percentiles_ms(inf)["p50"],
                             "postprocess": percentiles_ms(post)["p50"]},
            "peak_rss_mb": peak_rss_mb(), "rss_scope": rss_scope, "torch_loaded": torch_loaded()}


def bench_artifact(path: Path, batches: list[int], iterations: int, warmup: int,
                   frames: list[np.ndarray], backend: str | None = None,
                   compile: str | None = None) -> tuple[list[dict[str, Any]], Segmenter]:  # noqa: A002
    """Times pre-processing, inference and post-processing separately on real or synthetic frames;
    `compile` ('aoti' or 'inductor') compiles `.pt2` programs first (compile_s in the row)."""
    # bench's frames are RGB (read from image files): timed and scored in that layout
    seg = Segmenter(load_backend(path, backend, **backend_options(path, compile)), layout="rgb").__enter__()
    rows = []
    for batch in batches:
        chunk = [frames[i % len(frames)] for i in range(batch)]
        times = [_time_once(seg, chunk) for _ in range(warmup + iterations)][warmup:]
        rows.append(_row(path, seg, batch, times, "process so far (artifacts run one after another)"))
    return rows, seg


def bench_interleaved(paths: list[Path], batches: list[int], iterations: int, warmup: int,
                      frames: list[np.ndarray], compile: str | None = None) -> list[tuple[list[dict[str, Any]], Segmenter]]:  # noqa: A002
    """All artifacts loaded at once and timed in turns, so drifting machine speed hits all alike
    (ratios stay fair on shared or throttling machines); peak RSS is then the whole process's."""
    segs = [Segmenter(load_backend(p, **backend_options(p, compile)), layout="rgb").__enter__() for p in paths]
    rows: list[list[dict[str, Any]]] = [[] for _ in segs]
    for batch in batches:
        chunk = [frames[i % len(frames)] for i in range(batch)]
        times: list[list[tuple[float, float, float]]] = [[] for _ in segs]
        for i in range(warmup + iterations):
            for k, seg in enumerate(segs):
                t = _time_once(seg, chunk)
                if i >= warmup:
                    times[k].append(t)
        for k, (p, seg) in enumerate(zip(paths, segs)):
            rows[k].append(_row(p, seg, batch, times[k], "process, all artifacts loaded"))
    return list(zip(rows, segs))


def bench_engines(paths: list[Path], batches: list[int], iterations: int, warmup: int, frames: list[np.ndarray],
                  masks: list[np.ndarray] | None = None, interleave: bool = False,
                  compile: str | None = None) -> list[dict[str, Any]]:  # noqa: A002
    """Time every artifact (in turns with `interleave`) and, with ground-truth `masks`, score it:
    Dice/IoU against the truth and mask agreement with the first artifact (the comparator's).

    Returns:
        One row per artifact and batch size (see `bench_artifact`), scored rows with dice, iou and
        dice_agreement_with_first (over the frames where either has foreground), max_abs_err_with_first
        and mean_abs_err_with_first (probabilities).
    """
    if interleave:
        runs = bench_interleaved(paths, batches, iterations, warmup, frames, compile=compile)
    else:
        runs = (bench_artifact(p, batches, iterations, warmup, frames, compile=compile) for p in paths)
    results: list[dict[str, Any]] = []
    first = None
    for rows, seg in runs:
        try:
            if masks is not None:
                metrics, probs = score(seg, frames, masks)
                first = first or (probs, seg.threshold)
                versus = agreement(first[0], probs, first[1])  # the comparator's figures, raw outputs first
                for r in rows:
                    r.update(dice=metrics["dice"], iou=metrics["iou"], dice_agreement_with_first=versus["dice_agreement"],
                             max_abs_err_with_first=versus["max_abs_err"], mean_abs_err_with_first=versus["mean_abs_err"])
        finally:
            seg.close()
        results += rows
    return results
