"""TensorRT engines in the export: built from the typed FP16 / QDQ INT8 graphs, then gated like
every artifact. The engine itself runs the held-out images (through the runtime's TensorRT
backend) and must agree with the checkpoint before it is kept; its manifest entry records only
what was measured on the engine (never the ONNX graph's parity), its sha256 and its full key."""

from __future__ import annotations

from typing import Any

import numpy as np

from llm4seg.errors import ConfigError


def engine_entries(job: Any) -> dict[str, dict[str, str]]:
    """Build, gate and describe model.<precision>.plan for each FP16/INT8 graph of the export `job`
    where TensorRT imports; everywhere, return the command lines that build them on the target."""
    from llm4seg.export.recipe import engine_recipe

    opts, cfg = job.opts, job.cfg
    sources = [(p, n) for p, n in (("fp16", "model.fp16.onnx"), ("int8", "model.int8.onnx")) if n in job.manifests]
    if not sources:
        raise ConfigError("--engine builds from the typed FP16 or the QDQ INT8 graph", hint="add --fp16 or --int8")
    recipes = {f"model.{p}.plan": engine_recipe(n, p, opts.batch, cfg.in_channels, cfg.image_size) for p, n in sources}
    try:
        import tensorrt  # noqa: F401  (the real one, or a test's stand-in)
    except ImportError:
        job.log("TensorRT is not installed here: build the engine on the target with the commands below "
                "(also in manifest.json under engine_recipes)")
        return recipes
    _build(job, sources)
    return recipes


def _build(job: Any, sources: list[tuple[str, str]]) -> None:
    from llm4seg.export.tensorrt import cached_engine
    from llm4seg.runtime.backends.tensorrt_backend import TensorRTBackend

    opts, cfg, work = job.opts, job.cfg, job.work
    for precision, name in sources:
        job.log(f"building TensorRT engine model.{precision}.plan from {name}")
        plan, key, built = cached_engine(work / name, work, precision, opts.batch, cfg.in_channels, cfg.image_size,
                                         work / ".engine-cache")
        extra = {"engine": key, "engine_built_now": built, "source_onnx": name}
        entry = job.manifest_entry(plan.name, precision, {}, extra)
        job.log(f"checking {plan.name} with TensorRT on {len(job.held_x)} images")
        with TensorRTBackend(plan, manifest=entry) as engine:
            step = opts.batch[2]
            probs = np.concatenate([engine.infer(job.held_x[i:i + step])[:, 0] for i in range(0, len(job.held_x), step)])
        job.describe(plan.name, precision, job.gate(plan.name, probs, job.reference), None, extra)
