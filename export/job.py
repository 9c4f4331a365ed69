"""`ExportJob`: one export in its staging folder, and how each artifact is entered, gated and timed.

Every artifact goes the same way: its manifest entry is built once (`entry`), its runtime Backend
is made from that very entry, the comparator runs the held-out images through the Segmenter's
preprocessing of the entry and the backend (`gate`), and the measured agreement is recorded in
the entry (`record`). The export steps (pipeline.py, engine_gate.py) only say which files.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from llm4seg.checkpoint import load_checkpoint, read_checkpoint_config
from llm4seg.contract import FrameContract
from llm4seg.evaluate import predict_probs
from llm4seg.export.heldout import SIZE_FACTORS, held_out_images
from llm4seg.export.options import ExportOptions
from llm4seg.profile import count_macs
from llm4seg.runtime.core.backends import Backend, load_backend
from llm4seg.runtime.core.comparator import (Comparator, Tolerance, inputs_from_frames, require_finite,
                                             tolerance_for)
from llm4seg.runtime.core.manifest import artifact_sha256  # the runtime's digest cache: load hashes nothing
from llm4seg.runtime.core.manifest_build import build_manifest
from llm4seg.runtime.core.stats import interleaved_ms, median_ms
from llm4seg.quality import calibrate_low_confidence


def rtx_plan_name(precision: str, target: str) -> str:
    """model.fp16.rtx-sm89.plan: a TensorRT-RTX engine for one compute capability."""
    return f"model.{precision}.rtx-{target.lower()}.plan"


def tensorrt_checks(path: Path) -> dict[str, Any]:
    """The static TensorRT parser check for every recorded target version (see trt_check.py)."""
    from llm4seg.export.trt_check import check_graph, target_versions

    return {v: check_graph(path, v) for v in target_versions()}


def graph_entry(path: Path, model_config: dict[str, Any], precision: str = "fp32",
                batch_range: tuple[int, int, int] = (1, 1, 16), checkpoint_sha256: str = "",
                folds: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                opset: int | None = None, frames: dict[str, Any] | None = None) -> dict[str, Any]:
    """A manifest entry for the graph at `path` (its digest and size, the model's preprocessing), so
    any graph, a candidate or a benchmark's variant too, runs through a runtime Backend (`frames`:
    a frames graph's form and input colour, see build_manifest)."""
    return build_manifest(artifact=path.name, precision=precision, model_config=model_config,
                          checkpoint_sha256=checkpoint_sha256, opset=opset, batch_range=batch_range, folds=folds or {},
                          extra={"sha256": artifact_sha256(path), "size_bytes": path.stat().st_size, **(extra or {})},
                          frames=frames)


def graph_backend(path: Path, model_config: dict[str, Any], precision: str = "fp32", **options: Any) -> Backend:
    """The runtime backend of a graph that has no manifest on disk (see `graph_entry`)."""
    return load_backend(path, manifest=graph_entry(path, model_config, precision), **options)


class ExportJob:
    """One export into the staging folder `work`: the checkpoint, its held-out images, the
    checkpoint's own probabilities on them (the reference), and the entries written so far.

    Args:
        checkpoint: the training checkpoint folder (safetensors + config).
        opts: the export's options.
        work: the staging folder the artifacts are written into.
        log: where progress lines go.
    """

    def __init__(self, checkpoint: Path, opts: ExportOptions, work: Path, log: Callable[[str], None]) -> None:
        self.opts, self.work, self.log = opts, work, log
        self.ckpt_cfg = read_checkpoint_config(checkpoint)
        self.model = load_checkpoint(checkpoint)
        self.cfg = self.model.config
        self.data = held_out_images(opts, self.cfg.image_size)
        log(f"held-out images: {len(self.data.images)} of {self.data.data_name}"
            + (f"; calibration: {len(self.data.calib)} of {self.data.calib_source}" if opts.int8 else ""))
        self.contract = FrameContract.from_model_config(self.cfg)
        reference = self.reference_probs(self.data.frames)
        self.checkpoint_comparator = self.comparator(reference)
        # The quality flag's threshold, from the checkpoint on the held-out images at their own size
        # (every third gate frame is an image's native frame: heldout.gate_frames).
        self.quality = calibrate_low_confidence(reference[::1 + len(SIZE_FACTORS)], self.cfg.threshold,
                                                f"{self.data.data_name} (native size, every other one tinted)")
        self.macs_before = count_macs(self.model, self.cfg.image_size, self.cfg.in_channels)
        self.rows: list[dict[str, Any]] = []
        self.manifests: dict[str, dict[str, Any]] = {}
        self.folds: dict[str, Any] = {}
        self.int8_refused: dict[str, Any] | None = None
        self.fp32_probs: np.ndarray | None = None

    def reference_probs(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """The checkpoint's probabilities on RGB frames at each frame's size, through the frame
        contract as training applies it (its resize, torch's normalisation, its resize back)."""
        resized = np.stack([self.contract.resize_image(f) for f in frames])
        probs = predict_probs(self.model, resized, torch.device("cpu"), batch_size=8)
        require_finite(probs, "the checkpoint, on the held-out images,", hint="its weights hold NaN or inf values: "
                       "train again (or resume from an earlier state); nothing was exported")
        return [self.contract.prob_at_size(p, f.shape[:2]) for p, f in zip(probs, frames)]

    def comparator(self, reference: list[np.ndarray]) -> Comparator:
        """A comparator over the gate frames (held-out images at several sizes, some tinted) against
        `reference` probabilities at those frames' sizes."""
        return Comparator(self.data.frames, reference, self.cfg.threshold, self.data.frame_masks)

    def entry(self, path: Path, precision: str, extra: dict[str, Any] | None = None,
              opset: int | None = None, frames: dict[str, Any] | None = None) -> dict[str, Any]:
        """The manifest entry of the file at `path`, built once: its digest and size, the model's
        preprocessing, and an empty `parity` that `record` fills with what the gate measured."""
        return graph_entry(path, self.cfg.to_dict(), precision, self.opts.batch, self.ckpt_cfg["weights_sha256"],
                           self.folds, {"quality": self.quality, **(extra or {})}, opset, frames)

    def backend(self, entry: dict[str, Any], folder: Path | None = None, **options: Any) -> Backend:
        """The runtime backend of the entry's artifact (in `folder`, default the staging folder),
        constructed from that entry, not from a manifest on disk."""
        return load_backend((folder or self.work) / entry["artifact"], manifest=entry, **options)

    def gate(self, entry: dict[str, Any], comparator: Comparator | None = None,
             backend: Backend | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Run the entry's artifact on the gate frames and refuse it outside the bounds of its
        precision (`tolerance`: probability error, then the masks)
        against the reference (the checkpoint's probabilities unless `comparator` says otherwise).

        Returns:
            (its probabilities at each frame's size, the agreement stats).
        """
        self.log(f"checking {entry['artifact']} on {len(self.data.frames)} frames ({len(self.data.images)} images "
                 f"of {self.data.data_name} at three sizes, some tinted)")
        return (comparator or self.checkpoint_comparator).check(backend or self.backend(entry),
                                                                 self.tolerance(entry["precision"]), what=entry["artifact"])

    def tolerance(self, precision: str) -> Tolerance:
        """The gate's bounds for an artifact of `precision`: its probability bounds, and masks at
        `min_agreement` with the reference; for INT8 (its ladder's candidates and the artifact kept
        alike) Dice against the held-out truth at most `max_int8_drop` below the FP32 graph's, or
        without masks, agreement with it at 1 - `max_int8_drop`."""
        if precision == "int8":
            drop = self.opts.max_int8_drop
            return tolerance_for("int8", 1.0 - drop).with_truth_drop(drop)
        return tolerance_for(precision, self.opts.min_agreement)

    def record(self, entry: dict[str, Any], stats: dict[str, Any], latency_ms: float | None = None) -> None:
        """Keep the entry with the agreement its gate measured, and its row in the export's table."""
        entry["parity"] = stats
        name = entry["artifact"]
        self.manifests[name] = entry
        self.rows.append({"artifact": name, "precision": entry["precision"], "size_mb": entry["size_bytes"] / 1e6,
                          "macs": self.folds["macs_after"], "dice_agreement": stats["dice_agreement"],
                          "max_abs_err": stats["max_abs_err"], "mean_abs_err": stats["mean_abs_err"],
                          "cpu_latency_ms": latency_ms})

    def inputs(self, frames: np.ndarray) -> np.ndarray:
        """Frames -> normalised model inputs by the FP32 entry's Segmenter preprocessing (calibration)."""
        return inputs_from_frames(self.backend(self.manifests["model.onnx"]), list(frames))

    def latency_ms(self, path: Path, entry: dict[str, Any], runs: int = 5) -> float:
        """Median batch-1 latency of an ONNX graph in onnxruntime on this CPU (`latency_threads`)."""
        with load_backend(path, manifest=entry, threads=self.opts.latency_threads) as backend:
            x1 = inputs_from_frames(backend, self.data.images[:1])
            return median_ms(lambda: backend.infer(x1), warmup=1, iterations=runs)

    def latencies_ms(self, graphs: list[tuple[Path, dict[str, Any]]], rounds: int = 7) -> list[float]:
        """Median batch-1 latencies of ONNX graphs (path, manifest entry) in onnxruntime on this CPU,
        timed in turns: one call each per round, after a pause that lets the previous session's
        spinning threads go quiet, so the machine's drifting speed hits all alike."""
        with ExitStack() as stack:
            backends = [stack.enter_context(load_backend(path, manifest=entry, threads=self.opts.latency_threads))
                        for path, entry in graphs]
            x1 = inputs_from_frames(backends[0], self.data.images[:1])
            calls = {str(i): (lambda b=b: b.infer(x1)) for i, b in enumerate(backends)}
            times = interleaved_ms(calls, warmup=1, iterations=rounds, gap_s=0.02)
        return [statistics.median(times[str(i)]) for i in range(len(graphs))]

    def real_build(self, name: str, precision: str, frames_form: str | None = None) -> dict[str, Any]:
        """Parse and build `name` with the real TensorRT-RTX builder (where installed); a refusal
        fails the export. With --build-engines, the FP16/INT8 float graphs' engines are kept
        (rtx_build.py); a frames graph (`frames_form`) is built with its NHWC profile, not kept."""
        from llm4seg.export import rtx_build
        from llm4seg.export.frames_graph import frames_profile

        keep = None
        if self.opts.engine and precision in ("fp16", "int8") and not frames_form:
            keep = {t: self.work / rtx_plan_name(precision, t) for t in self.opts.rtx_targets}
        profile = frames_profile(self.opts.batch, self.cfg.image_size, frames_form) if frames_form else None
        record = self.candidate_build(self.work / name, keep, profile)
        self.log(f"{name}: {rtx_build.summary(record)}")
        if record["ran"] and not record["ok"]:
            raise rtx_build.refusal(name, record)
        return record

    def candidate_build(self, path: Path, keep: dict[str, Path] | None = None,
                        profile: tuple[tuple[int, ...], ...] | None = None) -> dict[str, Any]:
        """The real TensorRT-RTX build of a graph for the export's targets and profile (`keep`:
        target -> where to write its engine; none kept for INT8 candidates; `profile`: default the
        float input's batch range at the model's size)."""
        from llm4seg.export import rtx_build
        from llm4seg.export.tensorrt import profile_shapes

        profile = profile or profile_shapes(self.opts.batch, self.cfg.in_channels, self.cfg.image_size)
        return rtx_build.build_record(path, self.opts.rtx_targets, profile, keep)
