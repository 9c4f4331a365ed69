"""Explicitly quantized INT8 (QDQ) ONNX, calibrated on real images and gated by Dice.

Graph rules follow TensorRT's explicit quantization: symmetric INT8 (zero point 0) for weights
and activations, per-channel weights (conv output channels, MatMul columns), QDQ pairs only on
the inputs of Conv and weight MatMuls. Biases stay float: onnxruntime's default INT32 bias
DequantizeLinear is refused by TensorRT's parser (DequantizeLinear takes INT8/FP8/INT4 inputs;
measured with TensorRT-RTX 1.7, issue 18). Outputs get no Q/DQ of their own (TensorRT fuses
the scale into the next quantized input), so GELU, norms, softmax, residual adds and the
sigmoid run in float. Attention score/value MatMuls are never quantized.

Candidates go from most to least INT8. Among those whose mask Dice against the FP32 graph on
held-out images stays within `max_drop`, the fastest on this CPU is kept (or, without a timer,
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
                   latency: Callable[[Path], float] | None = None,
                   builder: Callable[[Path], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Try every candidate; keep the fastest (by `latency`, else the most INT8) within the Dice gate.

    INT8 is not faster everywhere: on CPUs without fast INT8 kernels the Q/DQ around convolutions
    can cost more than it saves, so speed is measured, not assumed.

    Args:
        calib_x: normalised calibration inputs (N, C, S, S), as the runtime feeds the graph.
        score: candidate graph -> its agreement with the FP32 graph on held-out images (the
            comparator's `agreement` stats: n, dice_agreement, max_abs_err, ...) and `failed`, the
            bounds it misses (empty: it passes; the comparator's `verdict`).
        max_drop: the most mask Dice agreement a candidate may lose (0.005: half a point), as the
            caller's `score` applies it; named in the refusal.
        latency: candidate graph -> its CPU latency in ms; without it the most INT8 passing one wins.
        builder: the real TensorRT-RTX build (rtx_build.build_record): a candidate it refuses fails.

    Returns:
        The report recorded under the artifact's `int8` key (chosen, candidates, kept_in_fp32, ...).
    """
    onnx = require("onnx", "INT8 quantization")
    shape_inference = require("onnxruntime.quantization.shape_inference")
    tried, best = [], None
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        shape_inference.quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        all_nodes = quantizable_nodes(onnx.load(str(pre)))
        has_block = any(w.startswith("block.") for w in all_nodes.values())
        seen: list[set[str]] = []
        for i, cand in enumerate(CANDIDATES):
            nodes = [n for n, w in all_nodes.items() if cand.keep(w)]
            if not nodes or set(nodes) in seen:  # a CNN-only model: the LLM rungs select nothing new
                continue
            seen.append(set(nodes))
            if not has_block:
                cand = Candidate(cand.name.replace("LLM block + encoder", "encoder only"), cand.keep)
            trial = Path(tmp) / f"trial{i}.onnx"
            quantize_nodes(pre, trial, calib_x, nodes, Path(tmp) / "calib.cache")
            stats = score(trial)
            passed = not stats["failed"]  # the caller's bounds: probability error, then mask agreement
            row = {"candidate": cand.name, "int8_nodes": len(nodes), "fp32_nodes": len(all_nodes) - len(nodes),
                   "passed": passed, **stats}
            if builder is not None:
                row["tensorrt_rtx"] = _build_verdict(builder(trial))
                passed = row["passed"] = passed and row["tensorrt_rtx"] != "refused"
            if passed and latency is not None:
                row["cpu_latency_ms"] = latency(trial)
            tried.append(row)
            log(f"INT8 candidate '{cand.name}': {len(nodes)}/{len(all_nodes)} nodes, mask agreement with FP32 "
                f"{stats['dice_agreement']:.4f}" + (f", {row['cpu_latency_ms']:.1f} ms" if "cpu_latency_ms" in row else "")
                + (f", TensorRT-RTX build {row['tensorrt_rtx']}" if "tensorrt_rtx" in row else ""))
            if passed and (best is None or row.get("cpu_latency_ms", 0) < best[0].get("cpu_latency_ms", 0)):
                best = (row, trial, nodes)
            if passed and latency is None:
                break  # without timings, the most INT8 candidate that passes wins
        if best is not None:
            row, trial, nodes = best
            with atomic_path(out_path) as final:
                final.write_bytes(trial.read_bytes())
            return {"chosen": row["candidate"], "candidates": tried,
                    "kept_in_fp32": [n for n in all_nodes if n not in set(nodes)],
                    # 100 x (1 - mask Dice agreement with FP32): disagreement, not a loss of Dice vs the truth
                    "dice_disagreement_points": 100 * (1.0 - row["dice_agreement"]),
                    "calibration_images": len(calib_x), "heldout_images": row["n"]}
    table = "; ".join(f"{r['candidate']}: mask agreement with FP32 {r['dice_agreement']:.4f}"
                      + (f" ({'; '.join(r['failed'])})" if r.get("failed") else "")
                      + (" (TensorRT-RTX refused it)" if r.get("tensorrt_rtx") == "refused" else "") for r in tried)
    built = " and was built by TensorRT-RTX" if builder is not None else ""
    error = ExportError(f"no INT8 candidate passed its gate against the FP32 graph (mask agreement with FP32 >= "
                        f"{1 - max_drop:.3f} and the INT8 probability bounds){built}: {table}",
                        hint="calibrate on more, more representative images (--calib, --calib-images), score more "
                        "held-out images (--parity-images), train the model longer, or ship the FP16/FP32 artifact")
    error.candidates = tried  # the manifest records the refused ladder
    raise error
