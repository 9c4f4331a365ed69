"""Adopt an engine built on the target (trtexec or polygraphy, from the export's recipe).

Runs where the engine runs (TensorRT and cuda-python, no torch): computes the plan's sha256 and
its key from the files and this device, runs the engine and its source ONNX graph (onnxruntime,
CPU) on the same seeded frames through the one comparator (runtime/core/comparator.py), refuses it
unless their masks agree, then records the engine in the manifest with what was measured. Only
then do `bench`, `video` and `Segmenter` accept it.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg._optional import require
from llm4seg.errors import ConfigError, ExportError
from llm4seg.runtime.core.comparator import Comparator, gate_record, probs_from_frames, tolerance_for, verdict
from llm4seg.runtime.core.manifest import MANIFEST_NAME, add_entry, artifact_sha256, check_entry, read_manifest


def _recipe_entry(plan: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    manifest_path = plan.parent / MANIFEST_NAME
    manifest = read_manifest(plan.parent)
    listed = manifest.get("artifacts", {}).get(plan.name) or {}
    precision = plan.name.split(".")[1] if plan.name.count(".") == 2 else None
    # A TensorRT-RTX engine the export built for a compute capability names its source itself.
    source = listed.get("source_onnx") or {"fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}.get(precision or "")
    if source is None or source not in manifest.get("artifacts", {}):
        raise ConfigError(f"{plan.name} has no source graph in {manifest_path} (expected model.fp16.plan or "
                          "model.int8.plan beside its .onnx)", hint="build the plan from the export's recipe")
    return manifest, json.loads(json.dumps(manifest["artifacts"][source]))


def _tool_versions(trt: Any) -> dict[str, str]:
    """The versions that ran the adoption check here (not the export machine's)."""
    import onnxruntime

    return {"tensorrt": trt.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def adopt_engine(plan: Path | str, samples: int = 8, min_agreement: float = 0.99, seed: int = 0) -> dict[str, Any]:
    """Check `plan` against its source ONNX graph and record it in the manifest; returns its entry."""
    from llm4seg.runtime.core.backends.onnxruntime_backend import OnnxRuntimeBackend
    from llm4seg.runtime.core.backends.tensorrt_backend import TensorRTBackend
    from llm4seg.runtime.core.backends.engine_key import ANY_GPU, MODULE_FOR_PRODUCT, EngineKey, gpu_identity

    plan = Path(plan)
    if not plan.is_file():
        raise ConfigError(f"{plan} does not exist", hint="build it with the trtexec/polygraphy line the export printed")
    manifest, entry = _recipe_entry(plan)
    product = ((manifest["artifacts"].get(plan.name) or {}).get("engine") or {}).get("product", "TensorRT")
    trt = require(MODULE_FOR_PRODUCT.get(product, "tensorrt"), f"adopting a {product} engine")
    source = entry["artifact"]
    gpu, cc = gpu_identity()
    b, shape = entry["batch"], entry["inputs"][0]["shape"]
    key = EngineKey(artifact_sha256(plan.parent / source), trt.__version__, ANY_GPU if product == "TensorRT-RTX" else gpu,
                    cc, entry["precision"], tuple((n, *shape[1:]) for n in (b["min"], b["opt"], b["max"])), product)
    entry.update(artifact=plan.name, sha256=artifact_sha256(plan), size_bytes=plan.stat().st_size, source_onnx=source,
                 engine=key.to_dict(), engine_built_now=False, built_by="trtexec/polygraphy on this device")
    # What the export measured on its machine belongs to the source graph, not to this engine.
    for key_name in ("tensorrt_check", "tensorrt_rtx_build", "parity", "tool_versions"):
        entry.pop(key_name, None)
    check_entry(entry, plan, digest=False)  # a new entry: add_entry seals it
    n = max(b["min"], min(samples, b["max"]))
    # Seeded random frames through the Segmenter's preprocessing of this very entry, into both.
    size = int(entry["image_size"])
    frames = list(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))
    with OnnxRuntimeBackend(plan.parent / source) as reference:
        comparator = Comparator(frames, probs_from_frames(reference, frames), float(entry["threshold"]))
    _, stats = comparator.run(TensorRTBackend(plan, manifest=entry))
    bounds = tolerance_for(entry["precision"], min_agreement)
    failed = verdict(stats, bounds)
    # Its own key: random frames on this device, not the export's held-out-image gate (`parity`).
    entry["adoption"] = {"check": "mask agreement with the source graph on seeded random frames, on this device",
                         "n": n, "reference": f"{source} in onnxruntime (CPU)",
                         "inputs": f"seeded random uint8 frames (seed {seed}) through the Segmenter's preprocessing",
                         "dice_agreement": stats["dice_agreement"], "max_abs_err": stats["max_abs_err"],
                         "mean_abs_err": stats["mean_abs_err"], "gate": gate_record(stats, bounds),
                         "min_agreement": min_agreement, "host": platform.node(), "tool_versions": _tool_versions(trt)}
    if failed:
        raise ExportError(f"{plan.name} disagrees with {source}: {'; '.join(failed)}",
                          hint="rebuild with the recipe's exact flags (--stronglyTyped); report it")
    add_entry(plan.parent, plan.name, entry)
    return entry
