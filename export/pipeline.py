"""`export_checkpoint`: checkpoint -> model.onnx [+ model.fp16.onnx, model.int8.onnx, model.pt2,
engines] + manifest.json. Each step writes a file and hands it to the job (job.py) to be entered,
gated through the runtime and timed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from llm4seg.errors import ExportError
from llm4seg.export.job import ExportJob, rtx_plan_name, tensorrt_checks
from llm4seg.export.onnx_export import onnx_from_model
from llm4seg.export.options import ExportOptions, default_splits, parse_batch, validate_options
from llm4seg.export.workdir import staged_folder
from llm4seg.profile import count_macs
from llm4seg.runtime.core.comparator import gate_record, verdict
from llm4seg.runtime.core.manifest import write_manifest

__all__ = ["ExportOptions", "export_checkpoint", "parse_batch", "rtx_plan_name"]


def export_checkpoint(checkpoint: Path, opts: ExportOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """checkpoint -> artifacts + manifest.json in `opts.out`, replaced whole only when the export succeeds.

    A refused INT8 gate still leaves the FP32/FP16 artifacts and their manifest (INT8 marked refused),
    then raises, so the hint's advice to ship them works.

    Returns:
        A summary: out, rows (one per artifact: size, MACs, agreement, CPU latency), data, manifest,
        calibration, engine_recipes, rtx_engines.
    """
    opts = replace(default_splits(opts), out=Path(opts.out))
    validate_options(opts)
    if opts.deepstream and not opts.frames:
        raise ExportError("--deepstream needs the frames graphs", hint="drop --no-frames")
    int8_refusal: ExportError | None = None
    with staged_folder(opts.out, log) as work:
        job = ExportJob(checkpoint, opts, work, log)
        _write_fp(job)
        if opts.pt2:
            _write_program(job)
        if opts.int8:
            int8_refusal = _write_int8(job)
        recipes = _engines(job) if opts.engine else None
        top = {**({"int8_refused": job.int8_refused} if int8_refusal else {}),
               **({"engine_recipes": recipes} if recipes else {})}
        write_manifest(work, job.manifests, top or None)
        if opts.deepstream:
            from llm4seg.runtime.doors.deepstream import write_nvinfer_config

            log(f"wrote {write_nvinfer_config(work).name} (DeepStream nvinfer, NOT RUN here)")
    summary = {"out": str(opts.out), "rows": job.rows, "data": job.data.data_name,
               "manifest": str(opts.out / "manifest.json"), "calibration": job.data.calib_source if opts.int8 else None,
               "engine_recipes": recipes, "rtx_engines": [n for n in job.manifests if ".rtx-" in n]}
    if int8_refusal is not None:
        error = ExportError(f"{int8_refusal.message}; {', '.join(job.manifests)} were written to {opts.out} with their "
                            "manifest (INT8 marked refused there)", hint=int8_refusal.hint)
        error.summary = summary  # what was written (engine recipes included), for the CLI to print
        raise error
    return summary


def _onnx(job: ExportJob, name: str, precision: str, extra: dict[str, Any] | None = None, comparator=None,
          frames: dict[str, Any] | None = None):
    """Gate, time, check with the TensorRT parsers and record one ONNX artifact (a float graph, or a
    frames graph when `frames` names its form); returns its probabilities. A float graph's frames
    graphs follow it, gated against the same reference."""
    path = job.work / name
    entry = job.entry(path, precision, extra, opset=job.opts.opset, frames=frames)
    probs, stats = job.gate(entry, comparator)
    latency_ms = None if frames else job.latency_ms(path, entry)
    trt = tensorrt_checks(path)
    job.log(f"{name}: TensorRT 10.x parser prediction " + ", ".join(
        f"{v} {'ok' if r['ok'] else 'FAILS'}{' (matrix assumed)' if r['assumed'] else ''}" for v, r in trt.items()))
    entry.update(tensorrt_check=trt,
                 tensorrt_rtx_build=job.real_build(name, precision, frames["form"] if frames else None))
    job.record(entry, stats, latency_ms)
    if not frames and job.opts.frames:
        _frames_graphs(job, name, precision, comparator)
    return probs


def _frames_graphs(job: ExportJob, source: str, precision: str, comparator=None) -> None:
    """The two frames graphs of one float graph (llm4seg.export.frames_graph), each gated like it."""
    from llm4seg.export.frames_graph import FORMS, frames_graph_from_onnx, frames_name

    for form in (*FORMS, *(("nvinfer",) if job.opts.deepstream else ())):
        name = frames_name(source, form, job.cfg.image_size)
        # nvinfer hands over pixels in the colour order it is told: the model's own.
        color = job.contract.color if form == "nvinfer" else job.opts.frames_color
        job.log(f"writing {name} ({'float pixel values' if form == 'nvinfer' else 'uint8'} {color} frames in, "
                f"mask out; {form})")
        frames_graph_from_onnx(job.work / source, job.work / name, job.contract, form, color)
        _onnx(job, name, precision, comparator=comparator, frames={"form": form, "input_color": color, "source": source})


def _write_fp(job: ExportJob) -> None:
    opts, cfg = job.opts, job.cfg
    job.log(f"exporting model.onnx (opset {opts.opset})")
    net = onnx_from_model(job.model, job.work / "model.onnx", opts.opset)
    job.folds.update({"bn_folded": net.report.bn_folded, "bn_kept": net.report.bn_kept,
                      "llm_block": net.report.llm_block, "macs_before": job.macs_before,
                      "macs_after": count_macs(net, cfg.image_size, cfg.in_channels)})
    job.fp32_probs = _onnx(job, "model.onnx", "fp32")
    if opts.fp16:
        job.log("exporting model.fp16.onnx (typed FP16; FP32 norms, softmax, sigmoid and I/O)")
        onnx_from_model(job.model, job.work / "model.fp16.onnx", opts.opset, half=True)
        _onnx(job, "model.fp16.onnx", "fp16")


def _write_program(job: ExportJob) -> None:
    from llm4seg.export.program import program_from_model

    job.log("exporting model.pt2 (torch.export of the folded graph, for the runtime's torch backend)")
    program_from_model(job.model, job.work / "model.pt2", job.opts.batch[2])
    entry = job.entry(job.work / "model.pt2", "fp32")
    _, stats = job.gate(entry, backend=job.backend(entry, device="cpu"))
    job.record(entry, stats)


def _write_int8(job: ExportJob) -> ExportError | None:
    """model.int8.onnx, gated against the FP32 graph; an INT8 refusal is returned (and recorded), not raised."""
    from llm4seg.export.int8 import int8_from_onnx

    opts, data = job.opts, job.data
    calib_x = job.inputs(data.calib)
    job.log(f"quantizing model.int8.onnx (calibration: {len(calib_x)} images of {data.calib_source})")
    warning = None
    if len(calib_x) < 8:
        warning = f"only {len(calib_x)} calibration image(s): INT8 ranges from so few images rarely hold"
        job.log(f"warning: {warning}")
    versus_fp32 = job.comparator(job.fp32_probs)
    entries: dict[Path, dict[str, Any]] = {}  # one entry per candidate graph, for its score and its timing

    def entry_of(trial: Path) -> dict[str, Any]:
        if trial not in entries:
            entries[trial] = job.entry(trial, "int8")
        return entries[trial]

    # With held-out masks, a candidate's masks are judged by Dice against the truth beside FP32's
    # (a weak model's masks move under INT8 without getting worse); without, by agreement with FP32.
    int8_bounds = job.tolerance("int8")

    def candidate_stats(trial: Path) -> dict[str, Any]:
        stats = versus_fp32.run(job.backend(entry_of(trial), folder=trial.parent))[1]
        return {**stats, "failed": verdict(stats, int8_bounds), "gate": gate_record(stats, int8_bounds)}

    # CPU speed says nothing about a TensorRT engine (INT8 convs and MatMuls are fast there):
    # for that target the most-INT8 candidate that passes the gate is kept.
    target = opts.int8_target or ("tensorrt" if opts.engine else "cpu")
    timer = (lambda trials: job.latencies_ms([(t, entry_of(t)) for t in trials])) if target == "cpu" else None
    try:
        report = int8_from_onnx(job.work / "model.onnx", job.work / "model.int8.onnx", calib_x, candidate_stats,
                                opts.max_int8_drop, job.log, latencies=timer, builder=job.candidate_build)
    except ExportError as exc:
        job.int8_refused = {"reason": exc.message, "candidates": getattr(exc, "candidates", []),
                            "calibration_source": data.calib_source}
        return exc
    report.update(target=target, calibration_source=data.calib_source, calibration_warning=warning)
    _onnx(job, "model.int8.onnx", "int8", {"int8": report}, comparator=versus_fp32)
    return None


def _engines(job: ExportJob) -> dict[str, dict[str, str]]:
    from llm4seg.export.engine_gate import engine_entries

    return engine_entries(job)
