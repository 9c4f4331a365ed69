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

from llm4seg.metrics import image_metrics
from llm4seg.runtime.backends import load_backend
from llm4seg.runtime.segmenter import Segmenter
from llm4seg.runtime.stats import percentiles_ms


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_threads": os.cpu_count()}
    try:
        info["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    return info


def torch_loaded() -> bool:
    import sys

    return "torch" in sys.modules


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def bench_artifact(path: Path, batches: list[int], iterations: int, warmup: int,
                   frames: list[np.ndarray], backend: str | None = None) -> tuple[list[dict[str, Any]], Segmenter]:
    """Times pre-processing, inference and post-processing separately on real or synthetic frames."""
    seg = Segmenter(load_backend(path, backend)).__enter__()
    rows = []
    for batch in batches:
        chunk = [frames[i % len(frames)] for i in range(batch)]
        pre, inf, post, total = [], [], [], []
        for i in range(warmup + iterations):
            t0 = time.perf_counter()
            x = np.stack([seg.preprocess(f) for f in chunk])
            t1 = time.perf_counter()
            probs = seg.infer_batch(x)
            t2 = time.perf_counter()
            for p, f in zip(probs, chunk):
                seg.postprocess(p, f.shape[:2], True)
            t3 = time.perf_counter()
            if i >= warmup:
                pre.append((t1 - t0) * 1e3)
                inf.append((t2 - t1) * 1e3)
                post.append((t3 - t2) * 1e3)
                total.append((t3 - t0) * 1e3)
        lat = percentiles_ms(total)
        rows.append({"artifact": str(path), "backend": seg.backend.name, "precision": seg.backend.manifest.get("precision"),
                     "batch": batch, "latency_ms": lat, "throughput_ips": batch * 1000.0 / lat["mean"],
                     "breakdown_ms": {"preprocess": percentiles_ms(pre)["p50"], "inference": percentiles_ms(inf)["p50"],
                                      "postprocess": percentiles_ms(post)["p50"]},
                     "peak_rss_mb": peak_rss_mb(), "torch_loaded": torch_loaded()})
    return rows, seg


def score(seg: Segmenter, images_rgb: list[np.ndarray], masks: list[np.ndarray]) -> tuple[dict[str, float], list[np.ndarray]]:
    """Dice and IoU of the artifact's masks (at each image's size) against ground truth."""
    predicted = []
    for i in range(0, len(images_rgb), 8):
        predicted += seg.segment(images_rgb[i:i + 8])
    per = [image_metrics(p.astype(bool), m) for p, m in zip(predicted, masks)]
    return {"dice": float(np.mean([r["dice"] for r in per])), "iou": float(np.mean([r["iou"] for r in per]))}, predicted


def agreement_dice(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([image_metrics(y.astype(bool), x.astype(bool))["dice"] for x, y in zip(a, b)]))
