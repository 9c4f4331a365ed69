"""Explicitly quantized INT8 (QDQ) ONNX, calibrated on real images and gated by Dice.

Graph rules follow TensorRT's explicit quantization: symmetric INT8 (zero point 0) for weights
and activations, per-channel weights (conv output channels, MatMul columns), QDQ pairs only on
the inputs of Conv and weight MatMuls. Biases stay float: onnxruntime's default INT32 bias
DequantizeLinear is refused by TensorRT's parser (DequantizeLinear takes INT8/FP8/INT4 inputs;
measured with TensorRT-RTX 1.7, issue 18). Outputs get no Q/DQ of their own (TensorRT fuses
the scale into the next quantized input), so GELU, norms, softmax, residual adds and the
sigmoid run in float. Attention score/value MatMuls are never quantized.

Candidates go from most to least INT8. Among those within the caller's gate (the INT8 probability
bounds, and Dice against the held-out truth within `max_drop` of the FP32 graph's, or without
masks, mask agreement with the FP32 graph), the fastest on this CPU is kept (or, without a timer,
the most INT8 one). If none passes, the export fails loudly.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from llm4seg._optional import require
from llm4seg.errors import ExportError
from llm4seg.fileio import atomic_path


@dataclass
class Candidate:
    """One rung of the INT8 ladder: its name and which weights' nodes it quantizes."""

    name: str
    keep: Callable[[str], bool]  # weight (initializer) name -> quantize its node?


# Candidates select by weight name: both exporters keep the parameter names, while node names
# differ ("/block/MatMul_6" from TorchScript, "node_matmul_4" from dynamo).
MLP_WEIGHTS = ("block.w_gu", "block.w_out_m", "block.w_down")
CANDIDATES = [
    Candidate("all Conv + weight MatMul", lambda w: True),
    Candidate("all but stem and head convs", lambda w: not w.startswith(("encoder.stem.", "decoder.head."))),
    Candidate("LLM block + encoder", lambda w: w.startswith(("block.", "encoder."))),
    Candidate("LLM block only", lambda w: w.startswith("block.")),
    # The MLP holds most of the layer's multiply-adds; its inputs are normalised, so INT8 suits it best.
    Candidate("LLM MLP only", lambda w: w in MLP_WEIGHTS),
]


def quantizable_nodes(model) -> dict[str, str]:
    """Conv nodes and MatMuls whose second input is a weight: node name -> weight name."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    names = {}
    for node in model.graph.node:
        # The Gram matrix feeds the RMS statistics: never INT8.
        if node.op_type == "Conv" or (node.op_type == "MatMul" and node.input[1] in constants
                                      and node.input[1] != "block.gram"):
            names[node.name] = node.input[1]
    return names


class _Reader:
    """CalibrationDataReader over an array, one image at a time. MinMax keeps every intermediate
    output until the end (about 0.3 GB per 256x256 image), hence a bounded --calib-images."""

    def __init__(self, x: np.ndarray) -> None:
        self.items = iter([{"image": x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.items, None)

    def rewind(self) -> None:  # the calibrator may ask; one pass is all we need
        pass


def quantize_nodes(pre_path: Path, out_path: Path, calib_x: np.ndarray, nodes: list[str], cache: Path) -> None:
    """Quantize `nodes` of the pre-processed graph to QDQ INT8 (TensorRT's explicit rules, see the
    module docstring), calibrated on `calib_x` with MinMax.
    """
    q = require("onnxruntime.quantization", "INT8 quantization")
    q.quantize_static(
        str(pre_path), str(out_path), calibration_data_reader=_Reader(calib_x), quant_format=q.QuantFormat.QDQ,
        per_channel=True, activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
        nodes_to_quantize=nodes, calibrate_method=q.CalibrationMethod.MinMax,
        calibration_cache_path=str(cache),
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                       "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
                       "QuantizeBias": False, "OpTypesToExcludeOutputQuantization": ["Conv", "MatMul"]},
    )
    drop_unused_opsets(out_path)


def drop_unused_opsets(path: Path) -> None:
    """Remove the operator-set imports onnxruntime's quantizer declares but no node uses (it adds
    eight: ai.onnx.ml, com.microsoft, ...), so the graph declares only what it needs."""
    onnx = require("onnx", "INT8 quantization")
    model = onnx.load(str(path))
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    if len(kept) != len(model.opset_import):
        del model.opset_import[:]
        model.opset_import.extend(kept)
        onnx.save(model, str(path))


def _build_verdict(record: dict[str, Any]) -> str:
    """'built', 'refused' or 'not run' for a candidate's real TensorRT-RTX build record."""
    if not record.get("ran"):
        return "not run"
    return "built" if record["ok"] else "refused"


def int8_from_onnx(fp32_path: Path, out_path: Path, calib_x: np.ndarray, score: Callable[[Path], dict[str, Any]],
                   max_drop: float = 0.005, log: Callable[[str], None] = lambda s: None,
                   latencies: Callable[[list[Path]], list[float]] | None = None,
                   builder: Callable[[Path], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Try every candidate; keep the fastest (by `latencies`, else the most INT8) within the Dice gate.

    INT8 is not faster everywhere: on CPUs without fast INT8 kernels the Q/DQ around convolutions
    can cost more than it saves, so speed is measured, not assumed: every candidate graph, passing
    or not, is timed in one interleaved run (one call each per round, in turns, so the machine's
    drifting speed hits all alike); the fastest of them is the `floor` the chosen one is put beside.

    Args:
        calib_x: normalised calibration inputs (N, C, S, S), as the runtime feeds the graph.
        score: candidate graph -> its agreement with the FP32 graph on held-out images (the
            comparator's `agreement` stats: n, dice_agreement, max_abs_err, dice_vs_truth, ...)
            and `failed`, the bounds it misses (empty: it passes; the comparator's `verdict`).
        max_drop: the most mask Dice agreement a candidate may lose (0.005: half a point), as the
            caller's `score` applies it; named in the refusal.
        latencies: candidate graphs -> their CPU latencies in ms, timed interleaved; without it
            the most INT8 passing candidate wins (the ladder stops there).
        builder: the real TensorRT-RTX build (rtx_build.build_record): a candidate it refuses fails.

    Returns:
        The report recorded under the artifact's `int8` key (chosen, candidates, kept_in_fp32, floor, ...).
    """
    onnx = require("onnx", "INT8 quantization")
    shape_inference = require("onnxruntime.quantization.shape_inference")
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        shape_inference.quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        all_nodes = quantizable_nodes(onnx.load(str(pre)))
        trials = _ladder(pre, all_nodes, calib_x, score, builder, Path(tmp), stop_at_first=latencies is None)
        tried = [row for row, _, _ in trials]
        if latencies is not None and any(row["passed"] for row in tried):  # the floor beside a choice
            _time_interleaved(trials, latencies, log)
        for row, _, _ in trials:
            log(_candidate_line(row))
        passing = [t for t in trials if t[0]["passed"]]
        if passing:
            row, trial, nodes = min(passing, key=lambda t: t[0].get("cpu_latency_ms", 0.0))
            with atomic_path(out_path) as final:
                final.write_bytes(trial.read_bytes())
            truth = {"dice_vs_truth_points": 100 * (row["dice_vs_truth"] - row["reference_dice_vs_truth"])} \
                if "dice_vs_truth" in row else {}  # the chosen one's Dice against the truth minus FP32's
            return {"chosen": row["candidate"], "candidates": tried,
                    "kept_in_fp32": [n for n in all_nodes if n not in set(nodes)],
                    # 100 x (1 - mask Dice agreement with FP32): disagreement, not a loss of Dice vs the truth
                    "dice_disagreement_points": 100 * (1.0 - row["dice_agreement"]), **truth,
                    "calibration_images": len(calib_x), "heldout_images": row["n"], **_floor(row, tried)}
    table = "; ".join(f"{r['candidate']}: " + ("; ".join(r["failed"]) if r.get("failed") else "passed")
                      + (" (TensorRT-RTX refused it)" if r.get("tensorrt_rtx") == "refused" else "") for r in tried)
    built = " and was built by TensorRT-RTX" if builder is not None else ""
    error = ExportError(f"no INT8 candidate passed its gate against the FP32 graph (the INT8 probability bounds, and "
                        f"Dice against the held-out truth at most {100 * max_drop:g} points below FP32's, or without "
                        f"masks, mask agreement with FP32 >= {1 - max_drop:.3f}){built}: {table}",
                        hint="calibrate on more, more representative images (--calib, --calib-images), score more "
                        "held-out images (--parity-images), train the model longer, or ship the FP16/FP32 artifact")
    error.candidates = tried  # the manifest records the refused ladder
    raise error


def _ladder(pre: Path, all_nodes: dict[str, str], calib_x: np.ndarray, score: Callable[[Path], dict[str, Any]],
            builder: Callable[[Path], dict[str, Any]] | None, tmp: Path,
            stop_at_first: bool) -> list[tuple[dict[str, Any], Path, list[str]]]:
    """Quantize and score each candidate (most INT8 first): (row, graph, its INT8 nodes) each;
    `stop_at_first` ends the ladder at the first that passes."""
    has_block = any(w.startswith("block.") for w in all_nodes.values())
    seen: list[set[str]] = []
    trials = []
    for i, cand in enumerate(CANDIDATES):
        nodes = [n for n, w in all_nodes.items() if cand.keep(w)]
        if not nodes or set(nodes) in seen:  # a CNN-only model: the LLM rungs select nothing new
            continue
        seen.append(set(nodes))
        name = cand.name if has_block else cand.name.replace("LLM block + encoder", "encoder only")
        trial = tmp / f"trial{i}.onnx"
        quantize_nodes(pre, trial, calib_x, nodes, tmp / "calib.cache")
        stats = score(trial)
        row = {"candidate": name, "int8_nodes": len(nodes), "fp32_nodes": len(all_nodes) - len(nodes),
               "passed": not stats["failed"], **stats}  # the caller's bounds: probability error, then masks
        if builder is not None:
            row["tensorrt_rtx"] = _build_verdict(builder(trial))
            row["passed"] = row["passed"] and row["tensorrt_rtx"] != "refused"
        trials.append((row, trial, nodes))
        if row["passed"] and stop_at_first:
            break  # without timings, the most INT8 candidate that passes wins
    return trials


def _time_interleaved(trials: list[tuple[dict[str, Any], Path, list[str]]],
                      latencies: Callable[[list[Path]], list[float]], log: Callable[[str], None]) -> None:
    """Every candidate's `cpu_latency_ms`, from one interleaved timing of all of them."""
    log(f"timing {len(trials)} INT8 candidate(s) in turns")
    for (row, _, _), ms in zip(trials, latencies([trial for _, trial, _ in trials])):
        row["cpu_latency_ms"] = ms


def _candidate_line(row: dict[str, Any]) -> str:
    """One log line for a scored candidate."""
    truth = f", Dice vs truth {row['dice_vs_truth']:.4f}" if "dice_vs_truth" in row else ""
    return (f"INT8 candidate '{row['candidate']}': {row['int8_nodes']}/{row['int8_nodes'] + row['fp32_nodes']} "
            f"nodes, mask agreement with FP32 {row['dice_agreement']:.4f}{truth}"
            + (f", {row['cpu_latency_ms']:.1f} ms" if "cpu_latency_ms" in row else "")
            + (f", TensorRT-RTX build {row['tensorrt_rtx']}" if "tensorrt_rtx" in row else "")
            + ("" if row["passed"] else " (fails its gate)"))


def _floor(chosen: dict[str, Any], tried: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest candidate timed (passing or not) and the chosen one's latency over it."""
    timed = [r for r in tried if "cpu_latency_ms" in r]
    if not timed or "cpu_latency_ms" not in chosen:
        return {}
    floor = min(timed, key=lambda r: r["cpu_latency_ms"])
    return {"floor": {"candidate": floor["candidate"], "cpu_latency_ms": floor["cpu_latency_ms"]},
            "chosen_over_floor": chosen["cpu_latency_ms"] / floor["cpu_latency_ms"]}
