"""`export_checkpoint`: checkpoint -> model.onnx [+ model.fp16.onnx, model.int8.onnx, engines] + manifest."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from llm4seg.checkpoint import load_checkpoint, read_checkpoint_config
from llm4seg.data.datasets import load_dataset
from llm4seg.errors import ConfigError, ExportError
from llm4seg.export.manifest import build_manifest, write_manifest
from llm4seg.export.onnx_export import onnx_from_model
from llm4seg.export.parity import agreement, normalised_batch, ort_probs, ort_session, torch_reference
from llm4seg.profile import count_macs


@dataclass
class ExportOptions:
    out: Path
    fp16: bool = False
    int8: bool = False
    calib: str | None = None
    calib_split: str | None = None
    data: str | None = None
    split: str | None = None
    engine: bool = False
    opset: int = 17
    batch: tuple[int, int, int] = (1, 1, 16)
    parity_images: int = 16
    calib_images: int = 16
    min_agreement: float = 0.99
    max_int8_drop: float = 0.005
    latency_threads: int = 2


def parse_batch(text: str) -> tuple[int, int, int]:
    try:
        lo, opt, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--batch {text!r} is not MIN:OPT:MAX", hint="e.g. --batch 1:1:16") from None
    if not 1 <= lo <= opt <= hi:
        raise ConfigError(f"--batch {text!r} must satisfy 1 <= MIN <= OPT <= MAX", hint="e.g. --batch 1:4:32")
    return lo, opt, hi


def cpu_latency_ms(path: Path, x1: np.ndarray, threads: int, runs: int = 5) -> float:
    session = ort_session(path, threads)
    session.run(["prob"], {"image": x1})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(["prob"], {"image": x1})
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def default_calib_split(opts: ExportOptions) -> str | None:
    """Gating on valK of a folder that also has trainK: calibrate on trainK (as training pairs them)."""
    if opts.calib_split or not opts.calib or not opts.split or not opts.split.startswith("val"):
        return opts.calib_split
    candidate = "train" + opts.split[len("val"):]
    return candidate if (Path(opts.calib) / "splits" / f"{candidate}.txt").is_file() else None


def _images(opts: ExportOptions, size: int):
    """Held-out images (the last of --data, else --calib, else synthetic) and calibration images."""
    pool = load_dataset(opts.data or opts.calib, opts.split, size, synthetic_count=2 * opts.parity_images, seed=10_000)
    n_held = min(opts.parity_images, len(pool))
    held = slice(len(pool) - n_held, len(pool))
    separate = bool(opts.calib) and ((bool(opts.data) and opts.calib != opts.data)
                                     or opts.calib_split not in (None, opts.split))
    if separate:
        calib_pool = load_dataset(opts.calib, opts.calib_split, size).images
    else:  # same pool: calibrate on images the gate does not score, when there are enough
        calib_pool = pool.images[: max(1, len(pool) - n_held)]
    return pool.images[held], pool.masks[held], calibration_sample(calib_pool, opts.calib_images), pool.name


def calibration_sample(images: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """A seeded random subset in file order: folders are often sorted by class, so never the first N."""
    if count >= len(images):
        return images
    index = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    return images[index]


def export_checkpoint(checkpoint: Path, opts: ExportOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    opts = replace(opts, calib_split=default_calib_split(opts))
    if opts.int8 and not opts.calib:
        raise ConfigError("--int8 needs calibration images", hint="pass --calib DIR (a dataset folder with images/ and masks/)")
    ckpt_cfg = read_checkpoint_config(checkpoint)
    model = load_checkpoint(checkpoint)
    cfg = model.config
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    held_u8, held_masks, calib_u8, data_name = _images(opts, cfg.image_size)
    held_x, calib_x = normalised_batch(held_u8, cfg), normalised_batch(calib_u8, cfg)
    reference = torch_reference(model, held_u8)
    macs_before = count_macs(model, cfg.image_size, cfg.in_channels)
    rows, manifests = [], {}

    def finish(name: str, precision: str, path: Path, probs_ref: np.ndarray, folds: dict, extra=None) -> np.ndarray:
        """Gate, time and describe one artifact; returns its held-out probabilities."""
        log(f"checking {name} in onnxruntime on {len(held_x)} images from {data_name}")
        probs = ort_probs(path, held_x)
        stats = agreement(probs_ref, probs, cfg.threshold, held_masks)
        if stats["dice_agreement"] < opts.min_agreement:
            raise ExportError(f"{name}: mask Dice agreement with the checkpoint is {stats['dice_agreement']:.4f}, "
                              f"below the gate {opts.min_agreement}", hint="report this; the artifact was not kept")
        latency = cpu_latency_ms(path, held_x[:1], opts.latency_threads)
        manifests[name] = build_manifest(artifact=name, precision=precision, model_config=cfg.to_dict(),
                                         checkpoint_sha256=ckpt_cfg.get("weights_sha256", ""), opset=opts.opset,
                                         batch_range=opts.batch, folds=folds, parity=stats, extra=extra)
        rows.append({"artifact": name, "precision": precision, "size_mb": path.stat().st_size / 1e6,
                     "macs": folds["macs_after"], "dice_agreement": stats["dice_agreement"],
                     "max_abs_err": stats["max_abs_err"], "cpu_latency_ms": latency})
        return probs

    log(f"exporting model.onnx (opset {opts.opset})")
    net = onnx_from_model(model, out / "model.onnx", opts.opset)
    folds = {"bn_folded": net.report.bn_folded, "bn_kept": net.report.bn_kept, "llm_block": net.report.llm_block,
             "macs_before": macs_before, "macs_after": count_macs(net, cfg.image_size, cfg.in_channels)}
    fp32_probs = finish("model.onnx", "fp32", out / "model.onnx", reference, folds)
    if opts.fp16:
        log("exporting model.fp16.onnx (typed FP16; FP32 norms, softmax, sigmoid and I/O)")
        onnx_from_model(model, out / "model.fp16.onnx", opts.opset, half=True)
        finish("model.fp16.onnx", "fp16", out / "model.fp16.onnx", reference, folds)
    if opts.int8:
        from llm4seg.export.int8 import int8_from_onnx

        calib_source = f"{opts.calib}:{opts.calib_split or 'all'}"
        log(f"quantizing model.int8.onnx (calibration: {len(calib_x)} images of {calib_source})")
        report = int8_from_onnx(out / "model.onnx", out / "model.int8.onnx", calib_x, held_x, fp32_probs,
                                cfg.threshold, opts.max_int8_drop, held_masks, log,
                                latency=lambda p: cpu_latency_ms(p, held_x[:1], opts.latency_threads))
        report["calibration_source"] = calib_source
        finish("model.int8.onnx", "int8", out / "model.int8.onnx", fp32_probs, folds, {"int8": report})
    if opts.engine:
        _engines(out, opts, cfg, manifests, log)
    write_manifest(out, manifests)
    return {"out": str(out), "rows": rows, "data": data_name, "manifest": str(out / "manifest.json")}


def _engines(out: Path, opts: ExportOptions, cfg, manifests: dict, log) -> None:
    from llm4seg.export.tensorrt import cached_engine

    sources = [(p, n) for p, n in (("fp16", "model.fp16.onnx"), ("int8", "model.int8.onnx")) if (out / n).is_file() and n in manifests]
    if not sources:
        raise ConfigError("--engine builds from the typed FP16 or the QDQ INT8 graph", hint="add --fp16 or --int8")
    for precision, name in sources:
        log(f"building TensorRT engine model.{precision}.plan from {name}")
        plan, key, built = cached_engine(out / name, out, precision, opts.batch, cfg.in_channels, cfg.image_size,
                                         out / ".engine-cache")
        entry = json.loads(json.dumps(manifests[name]))
        entry.update({"artifact": plan.name, "engine": key, "engine_built_now": built, "source_onnx": name})
        manifests[plan.name] = entry
