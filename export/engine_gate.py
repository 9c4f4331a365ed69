"""TensorRT engines in the export: built from the typed FP16 / QDQ INT8 graphs, then gated like
every artifact. The engine itself runs the held-out images (through the runtime's TensorRT
backend) and must agree with the checkpoint before it is kept; its manifest entry records only
what was measured on the engine (never the ONNX graph's parity), its sha256 and its full key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm4seg.errors import ConfigError

if TYPE_CHECKING:
    from llm4seg.export.job import ExportJob


def engine_entries(job: "ExportJob") -> dict[str, dict[str, str]]:
    """Build, gate and describe model.<precision>.plan for each FP16/INT8 graph of the export `job`
    where TensorRT imports; everywhere, return the command lines that build them on the target."""
    from llm4seg.export.recipe import engine_recipe

    opts, cfg = job.opts, job.cfg
    sources = [(p, n) for p, n in (("fp16", "model.fp16.onnx"), ("int8", "model.int8.onnx")) if n in job.manifests]
    if not sources:
        raise ConfigError("--build-engines builds from the typed FP16 or the QDQ INT8 graph", hint="add --fp16 or --int8")
    recipes = {f"model.{p}.plan": engine_recipe(n, p, opts.batch, cfg.in_channels, cfg.image_size) for p, n in sources}
    _describe_rtx_engines(job, sources)
    try:
        import tensorrt  # noqa: F401  (the real one, or a test's stand-in)
    except ImportError:
        job.log("TensorRT 10/11 is not installed here: build the engine on the target with the commands below "
                "(also in manifest.json under engine_recipes)")
        return recipes
    _build(job, sources)
    return recipes


def _describe_rtx_engines(job: "ExportJob", sources: list[tuple[str, str]]) -> None:
    """Manifest entries for the TensorRT-RTX engines the real build kept (pipeline.real_build).

    They were built for a compute capability on a machine that may have no GPU, so nothing ran
    them: the entry says so (`gate`), and `llm4seg adopt-engine` on an RTX GPU checks them."""
    from llm4seg.export.job import rtx_plan_name
    from llm4seg.export.tensorrt import profile_shapes
    from llm4seg.fileio import file_sha256
    from llm4seg.runtime.core.backends.engine_key import ANY_GPU, EngineKey, capability_from_target

    opts, cfg = job.opts, job.cfg
    for precision, name in sources:
        record = job.manifests[name].get("tensorrt_rtx_build") or {}
        for target, built in (record.get("targets") or {}).items():
            plan = rtx_plan_name(precision, target)
            if not built.get("ok") or not (job.work / plan).is_file():
                continue
            key = EngineKey(file_sha256(job.work / name), record["version"], ANY_GPU, capability_from_target(target),
                            precision, profile_shapes(opts.batch, cfg.in_channels, cfg.image_size), record["product"])
            gate = {"status": "NOT RUN", "why": "built without a GPU; run `llm4seg adopt-engine` on an RTX GPU of "
                    f"compute capability {capability_from_target(target)} to check it against {name}"}
            entry = job.entry(job.work / plan, precision, {"engine": key.to_dict(), "source_onnx": name,
                                                           "target": target, "gate": gate, "build_s": built["build_s"]})
            job.manifests[plan] = entry  # not `record`ed: nothing ran it, so it has no agreement to report
            job.log(f"kept {plan} ({record['product']} {record['version']}, {target}; not run here: no GPU)")


def _build(job: "ExportJob", sources: list[tuple[str, str]]) -> None:
    from llm4seg.export.tensorrt import cached_engine

    opts, cfg, work = job.opts, job.cfg, job.work
    for precision, name in sources:
        job.log(f"building TensorRT engine model.{precision}.plan from {name}")
        plan, key, built = cached_engine(work / name, work, precision, opts.batch, cfg.in_channels, cfg.image_size,
                                         work / ".engine-cache")
        entry = job.entry(plan, precision, {"engine": key, "engine_built_now": built, "source_onnx": name})
        _, stats = job.gate(entry, backend=job.backend(entry, backend="tensorrt"))
        job.record(entry, stats)
