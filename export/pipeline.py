"""`export_checkpoint`: checkpoint -> model.onnx [+ model.fp16.onnx, model.int8.onnx, engines] + manifest."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from llm4seg.checkpoint import load_checkpoint, read_checkpoint_config
from llm4seg.data.datasets import load_dataset
from llm4seg.errors import ConfigError, ExportError
from llm4seg.runtime.manifest import build_manifest, write_manifest
from llm4seg.export.workdir import staged_folder
from llm4seg.export.onnx_export import onnx_from_model
from llm4seg.export.parity import agreement, normalised_batch, ort_probs, ort_session, torch_reference
from llm4seg.profile import count_macs
from llm4seg.runtime.manifest import artifact_sha256  # the runtime's cache: its load-time check then hashes nothing


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
    pt2: bool = False
    int8_target: str | None = None     # "cpu" (fastest passing candidate here) or "tensorrt" (most INT8)
    opset: int = 17
    batch: tuple[int, int, int] = (1, 1, 16)
    parity_images: int = 16
    calib_images: int = 16
    min_agreement: float = 0.99
    max_int8_drop: float = 0.005
    latency_threads: int = 2
    rtx_targets: tuple[str, ...] = ("SM89",)  # compute capabilities the real TensorRT-RTX build is made for


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


def default_splits(opts: ExportOptions) -> ExportOptions:
    """Without --split, a dataset with split files is scored on its val split (val, else val1) and
    calibrated on the matching train split, never on images the gates score."""
    from llm4seg.data.datasets import held_out_split

    pool = opts.data or opts.calib
    held = held_out_split(pool, None) if pool and not opts.split and not opts.calib_split else None
    if held:  # the same rule as `llm4seg eval`: val, else val1; calibration from the matching train split
        calib = "train" + held[len("val"):]
        has_train = bool(opts.calib) and (Path(opts.calib) / "splits" / f"{calib}.txt").is_file()
        return replace(opts, split=held, calib_split=calib if has_train else None)
    return replace(opts, calib_split=default_calib_split(opts))


@dataclass
class HeldOut:
    """Images the gates score, calibration images (never the same ones), and where they came from."""

    images: np.ndarray
    masks: np.ndarray
    calib: np.ndarray
    data_name: str
    calib_source: str


def tensorrt_checks(path: Path) -> dict[str, Any]:
    """The static TensorRT parser check for every recorded target version (see trt_check.py)."""
    from llm4seg.export.trt_check import check_graph, target_versions

    return {v: check_graph(path, v) for v in target_versions()}


def validate_options(opts: ExportOptions) -> None:
    if opts.int8_target not in (None, "cpu", "tensorrt"):
        raise ConfigError(f"--int8-target {opts.int8_target!r} is not known", hint="use cpu or tensorrt")
    for name in ("parity_images", "calib_images"):
        value = getattr(opts, name)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {value!r} must be at least 1",
                              hint=f"e.g. --{name.replace('_', '-')} 16")
    if opts.int8 and not opts.calib:
        raise ConfigError("--int8 needs calibration images", hint="pass --calib DIR (a dataset folder with images/ and masks/)")


def _same_folder(a: str | None, b: str | None) -> bool:
    return bool(a and b) and Path(a).resolve() == Path(b).resolve()


def _images(opts: ExportOptions, size: int) -> HeldOut:
    """Held-out images (the last of --data, else --calib, else synthetic) and calibration images."""
    pool = load_dataset(opts.data or opts.calib, opts.split, size, synthetic_count=2 * opts.parity_images, seed=10_000)
    n_held = min(opts.parity_images, len(pool))
    held_stems = set(pool.stems[len(pool) - n_held:])
    separate = bool(opts.calib) and ((bool(opts.data) and not _same_folder(opts.calib, opts.data))
                                     or opts.calib_split not in (None, opts.split))
    if separate:
        calib_set = load_dataset(opts.calib, opts.calib_split, size)
        calib_pool, calib_stems = calib_set.images, calib_set.stems
        shared = held_stems & set(calib_stems) if _same_folder(opts.calib, opts.data or opts.calib) else set()
    else:  # same pool: calibrate on the images the gate does not score
        calib_pool, calib_stems = pool.images[: len(pool) - n_held], pool.stems[: len(pool) - n_held]
        shared = set() if len(calib_pool) else held_stems
    if opts.int8 and shared:
        raise ExportError(f"calibration and held-out images overlap ({len(shared)} shared, e.g. {sorted(shared)[:3]}): "
                          f"{pool.name} has {len(pool)} image(s) and the gate scores {n_held}",
                          hint="calibrate on another split (--calib-split train1) or folder, or lower --parity-images")
    return HeldOut(pool.images[len(pool) - n_held:], pool.masks[len(pool) - n_held:],
                   calibration_sample(calib_pool, opts.calib_images) if len(calib_pool) else calib_pool,
                   pool.name, f"{opts.calib}:{opts.calib_split or 'all'}")


def calibration_sample(images: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """A seeded random subset in file order: folders are often sorted by class, so never the first N."""
    if count >= len(images):
        return images
    index = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
    return images[index]


class _Export:
    """One export into a staging folder: each artifact is written, gated, timed and described."""

    def __init__(self, checkpoint: Path, opts: ExportOptions, work: Path, log: Callable[[str], None]) -> None:
        self.opts, self.work, self.log = opts, work, log
        self.ckpt_cfg = read_checkpoint_config(checkpoint)
        self.model = load_checkpoint(checkpoint)
        self.cfg = self.model.config
        self.data = _images(opts, self.cfg.image_size)
        log(f"held-out images: {len(self.data.images)} of {self.data.data_name}"
            + (f"; calibration: {len(self.data.calib)} of {self.data.calib_source}" if opts.int8 else ""))
        self.held_x = normalised_batch(self.data.images, self.cfg)
        self.reference = torch_reference(self.model, self.data.images)
        self.macs_before = count_macs(self.model, self.cfg.image_size, self.cfg.in_channels)
        self.rows: list[dict[str, Any]] = []
        self.manifests: dict[str, dict[str, Any]] = {}
        self.folds: dict[str, Any] = {}
        self.int8_refused: dict[str, Any] | None = None
        self.fp32_probs: np.ndarray | None = None

    def gate(self, name: str, probs: np.ndarray, probs_ref: np.ndarray) -> dict[str, Any]:
        stats = agreement(probs_ref, probs, self.cfg.threshold, self.data.masks)
        if stats["dice_agreement"] < self.opts.min_agreement:
            raise ExportError(f"{name}: mask Dice agreement with the checkpoint is {stats['dice_agreement']:.4f}, "
                              f"below the gate {self.opts.min_agreement}", hint="report this; the artifact was not kept")
        return stats

    def manifest_entry(self, name: str, precision: str, stats: dict[str, Any], extra: dict[str, Any] | None = None,
                       opset: int | None = None) -> dict[str, Any]:
        """The artifact's manifest entry: what was measured on this very file, and its digest."""
        path = self.work / name
        return build_manifest(
            artifact=name, precision=precision, model_config=self.cfg.to_dict(),
            checkpoint_sha256=self.ckpt_cfg["weights_sha256"], opset=opset, batch_range=self.opts.batch,
            folds=self.folds, parity=stats, extra={"sha256": artifact_sha256(path), "size_bytes": path.stat().st_size,
                                                   **(extra or {})})

    def describe(self, name: str, precision: str, stats: dict[str, Any], latency_ms: float | None,
                 extra: dict[str, Any] | None = None, opset: int | None = None) -> None:
        path = self.work / name
        self.manifests[name] = self.manifest_entry(name, precision, stats, extra, opset)
        self.rows.append({"artifact": name, "precision": precision, "size_mb": path.stat().st_size / 1e6,
                          "macs": self.folds["macs_after"], "dice_agreement": stats["dice_agreement"],
                          "max_abs_err": stats["max_abs_err"], "cpu_latency_ms": latency_ms})

    def onnx(self, name: str, precision: str, probs_ref: np.ndarray, extra=None) -> np.ndarray:
        """Gate, time and describe one ONNX artifact; returns its held-out probabilities."""
        self.log(f"checking {name} in onnxruntime on {len(self.held_x)} images from {self.data.data_name}")
        probs = ort_probs(self.work / name, self.held_x)
        stats = self.gate(name, probs, probs_ref)
        latency = cpu_latency_ms(self.work / name, self.held_x[:1], self.opts.latency_threads)
        trt = tensorrt_checks(self.work / name)
        self.log(f"{name}: TensorRT 10.x parser prediction " + ", ".join(
            f"{v} {'ok' if r['ok'] else 'FAILS'}{' (matrix assumed)' if r['assumed'] else ''}" for v, r in trt.items()))
        rtx = self.real_build(name, precision)
        self.describe(name, precision, stats, latency, {**(extra or {}), "tensorrt_check": trt,
                                                        "tensorrt_rtx_build": rtx}, opset=self.opts.opset)
        return probs

    def real_build(self, name: str, precision: str) -> dict[str, Any]:
        """Parse and build `name` with the real TensorRT-RTX builder (where installed); a refusal
        fails the export. With --engine, the FP16/INT8 engines it builds are kept (rtx_build.py)."""
        from llm4seg.export import rtx_build

        keep = None
        if self.opts.engine and precision in ("fp16", "int8"):
            keep = {t: self.work / rtx_plan_name(precision, t) for t in self.opts.rtx_targets}
        record = self.candidate_build(self.work / name, keep)
        self.log(f"{name}: {rtx_build.summary(record)}")
        if record["ran"] and not record["ok"]:
            raise rtx_build.refusal(name, record)
        return record


    def candidate_build(self, path: Path, keep: dict[str, Path] | None = None) -> dict[str, Any]:
        """The real TensorRT-RTX build of a graph for the export's targets and profile (`keep`:
        target -> where to write its engine; none kept for INT8 candidates)."""
        from llm4seg.export import rtx_build
        from llm4seg.export.tensorrt import profile_shapes

        return rtx_build.build_record(path, self.opts.rtx_targets,
                                      profile_shapes(self.opts.batch, self.cfg.in_channels, self.cfg.image_size), keep)


def rtx_plan_name(precision: str, target: str) -> str:
    """model.fp16.rtx-sm89.plan: a TensorRT-RTX engine for one compute capability."""
    return f"model.{precision}.rtx-{target.lower()}.plan"


def export_checkpoint(checkpoint: Path, opts: ExportOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """checkpoint -> artifacts + manifest.json in `opts.out`, replaced whole only when the export succeeds.

    A refused INT8 gate still leaves the FP32/FP16 artifacts and their manifest (INT8 marked refused),
    then raises, so the hint's advice to ship them works."""
    opts = replace(default_splits(opts), out=Path(opts.out))
    validate_options(opts)
    int8_refusal: ExportError | None = None
    with staged_folder(opts.out, log) as work:
        job = _Export(checkpoint, opts, work, log)
        _write_fp(job)
        if opts.pt2:
            _write_program(job)
        if opts.int8:
            int8_refusal = _write_int8(job, job.fp32_probs)
        recipes = _engines(job) if opts.engine else None
        top = {**({"int8_refused": job.int8_refused} if int8_refusal else {}),
               **({"engine_recipes": recipes} if recipes else {})}
        write_manifest(work, job.manifests, top or None)
    summary = {"out": str(opts.out), "rows": job.rows, "data": job.data.data_name,
               "manifest": str(opts.out / "manifest.json"), "calibration": job.data.calib_source if opts.int8 else None,
               "engine_recipes": recipes, "rtx_engines": [n for n in job.manifests if ".rtx-" in n]}
    if int8_refusal is not None:
        error = ExportError(f"{int8_refusal.message}; {', '.join(job.manifests)} were written to {opts.out} with their "
                            "manifest (INT8 marked refused there)", hint=int8_refusal.hint)
        error.summary = summary  # what was written (engine recipes included), for the CLI to print
        raise error
    return summary


def _write_fp(job: _Export) -> None:
    opts, cfg = job.opts, job.cfg
    job.log(f"exporting model.onnx (opset {opts.opset})")
    net = onnx_from_model(job.model, job.work / "model.onnx", opts.opset)
    job.folds.update({"bn_folded": net.report.bn_folded, "bn_kept": net.report.bn_kept,
                      "llm_block": net.report.llm_block, "macs_before": job.macs_before,
                      "macs_after": count_macs(net, cfg.image_size, cfg.in_channels)})
    job.fp32_probs = job.onnx("model.onnx", "fp32", job.reference)
    if opts.fp16:
        job.log("exporting model.fp16.onnx (typed FP16; FP32 norms, softmax, sigmoid and I/O)")
        onnx_from_model(job.model, job.work / "model.fp16.onnx", opts.opset, half=True)
        job.onnx("model.fp16.onnx", "fp16", job.reference)


def _write_program(job: _Export) -> None:
    from llm4seg.export.program import program_from_model
    from llm4seg.runtime.backends.torch_backend import TorchBackend

    job.log("exporting model.pt2 (torch.export of the folded graph, for the runtime's torch backend)")
    program_from_model(job.model, job.work / "model.pt2", job.opts.batch[2])
    entry = job.manifest_entry("model.pt2", "fp32", {})
    with TorchBackend(job.work / "model.pt2", manifest=entry, device="cpu") as backend:
        probs = np.concatenate([backend.infer(job.held_x[i:i + 8])[:, 0] for i in range(0, len(job.held_x), 8)])
    job.describe("model.pt2", "fp32", job.gate("model.pt2", probs, job.reference), None)


def _write_int8(job: _Export, fp32_probs: np.ndarray) -> ExportError | None:
    from llm4seg.export.int8 import int8_from_onnx

    opts, calib_x = job.opts, normalised_batch(job.data.calib, job.cfg)
    job.log(f"quantizing model.int8.onnx (calibration: {len(calib_x)} images of {job.data.calib_source})")
    warning = None
    if len(calib_x) < 8:
        warning = f"only {len(calib_x)} calibration image(s): INT8 ranges from so few images rarely hold"
        job.log(f"warning: {warning}")
    try:
        # CPU speed says nothing about a TensorRT engine (INT8 convs and MatMuls are fast there):
        # for that target the most-INT8 candidate that passes the gate is kept.
        target = opts.int8_target or ("tensorrt" if opts.engine else "cpu")
        timer = (lambda p: cpu_latency_ms(p, job.held_x[:1], opts.latency_threads)) if target == "cpu" else None
        report = int8_from_onnx(job.work / "model.onnx", job.work / "model.int8.onnx", calib_x, job.held_x, fp32_probs,
                                job.cfg.threshold, opts.max_int8_drop, job.data.masks, job.log, latency=timer,
                                builder=job.candidate_build)
        report["target"] = target
    except ExportError as exc:
        job.int8_refused = {"reason": exc.message, "candidates": getattr(exc, "candidates", []),
                            "calibration_source": job.data.calib_source}
        return exc
    report.update(calibration_source=job.data.calib_source, calibration_warning=warning)
    job.onnx("model.int8.onnx", "int8", fp32_probs, {"int8": report})
    return None


def _engines(job: _Export) -> dict[str, dict[str, str]]:
    from llm4seg.export.engine_gate import engine_entries

    return engine_entries(job)
