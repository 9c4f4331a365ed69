"""INT8 ways compared on one checkpoint: mask Dice against FP32 on held-out images, the real
TensorRT-RTX builder's verdict, the TensorRT 10.3 prediction, and CPU batch-1 latency (interleaved).

Ways: onnxruntime `quantize_static` with its defaults (INT32 bias Q/DQ, Q/DQ on outputs), the
same as llm4seg now calls it (biases float, Q/DQ on Conv/MatMul inputs only) for the most-INT8
candidate and for the MLP-only one, and NVIDIA Model Optimizer's ONNX PTQ (`modelopt.onnx.
quantization.quantize`, INT8, max calibration, CPU) where it imports. ModelOpt is not a project
dependency (its ONNX extra pins onnx 1.21 and onnxruntime-gpu); install it beside the venv:
  pip install --no-deps --target /tmp/mosite nvidia-modelopt onnx-graphsurgeon onnxconverter-common \
      onnxslim ml_dtypes pulp omegaconf antlr4-python3-runtime pydantic pydantic-core annotated-types \
      typing-inspection nvidia-ml-py polygraphy lief cppimport scipy
Run:
  PYTHONPATH=/tmp/mosite python -m benchmarks.int8_methods RUN/checkpoints/best --data ../shared/datasets/busi \
      --split val1 --calib-split train1 [--heldout 32 --calib-images 16 --runs 10]

With --ladder the ways are instead the export's own INT8 candidates (`export.int8.CANDIDATES`, quantized
as the export does, after onnxruntime's pre-processing): per candidate its time (interleaved with FP32
and the others), its probability error, its mask agreement with FP32 and its Dice against the truth
beside FP32's, and its time over the fastest candidate's (the floor): what a choice on a trained model
has to weigh (issue 47, item 3).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from llm4seg.runtime.tools.bench import cpu_name
from llm4seg.runtime.core.stats import interleaved_ms


def ort_default(src: Path, dst: Path, calib: np.ndarray, nodes: list[str]) -> None:
    """onnxruntime's QDQ with its defaults (what llm4seg shipped before issue 18)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from llm4seg.export.int8 import _Reader

    quantize_static(str(src), str(dst), _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                   "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}})


def modelopt_int8(src: Path, dst: Path, calib: np.ndarray) -> None:
    import modelopt.onnx.quantization as mq

    mq.quantize(str(src), quantize_mode="int8", calibration_data={"image": calib}, calibration_method="max",
                calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=str(dst), log_level="WARNING")


def graphs(fp32: Path, tmp: Path, calib: np.ndarray) -> dict[str, Path]:
    """name -> quantized graph, for every way that runs here."""
    import onnx

    from llm4seg.export.int8 import MLP_WEIGHTS, quantizable_nodes, quantize_nodes

    nodes = quantizable_nodes(onnx.load(str(fp32)))
    out = {"FP32 (reference)": fp32}
    ort_default(fp32, tmp / "ort_default.onnx", calib, list(nodes))
    out["onnxruntime defaults, all Conv+MatMul"] = tmp / "ort_default.onnx"
    quantize_nodes(fp32, tmp / "llm4seg_all.onnx", calib, list(nodes), tmp / "c1")
    out["llm4seg (float bias, inputs only), all Conv+MatMul"] = tmp / "llm4seg_all.onnx"
    mlp = [n for n, w in nodes.items() if w in MLP_WEIGHTS]
    if mlp:
        quantize_nodes(fp32, tmp / "llm4seg_mlp.onnx", calib, mlp, tmp / "c2")
        out["llm4seg (float bias, inputs only), LLM MLP only"] = tmp / "llm4seg_mlp.onnx"
    try:
        modelopt_int8(fp32, tmp / "modelopt.onnx", calib)
        out["NVIDIA ModelOpt int8 (max)"] = tmp / "modelopt.onnx"
    except ImportError as exc:
        print(f"ModelOpt not importable here ({exc}); see the docstring", file=sys.stderr)
    return out


def ladder_graphs(fp32: Path, tmp: Path, calib: np.ndarray) -> dict[str, Path]:
    """name -> graph: FP32, then each export INT8 candidate quantized as the export quantizes it."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from llm4seg.export.int8 import CANDIDATES, quantizable_nodes, quantize_nodes

    pre = tmp / "pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    nodes = quantizable_nodes(onnx.load(str(pre)))
    out = {"FP32 (reference)": fp32}
    for i, cand in enumerate(CANDIDATES):
        chosen = [n for n, w in nodes.items() if cand.keep(w)]
        if chosen:
            quantize_nodes(pre, tmp / f"cand{i}.onnx", calib, chosen, tmp / f"c{i}")
            out[f"{cand.name} ({len(chosen)}/{len(nodes)})"] = tmp / f"cand{i}.onnx"
    return out


def print_table(rows: dict[str, dict]) -> None:
    """The ways as a Markdown table, with Dice against the truth beside FP32's and time over the floor."""
    ref = rows["FP32 (reference)"]
    floor = min(r["cpu_b1_ms"] for n, r in rows.items() if n != "FP32 (reference)")
    print("| way | max prob error | Dice vs FP32 (mean / min) | Dice vs truth (points vs FP32) | TensorRT-RTX 1.7 build "
          "| TRT 10.3 predicted | CPU b1 ms | vs FP32 | x INT8 floor |")
    print("|---|---:|---|---|---|---|---:|---:|---:|")
    for name, r in rows.items():
        points = 100 * (r["dice_vs_truth"] - ref["dice_vs_truth"])
        print(f"| {name} | {r['max_abs_err']:.3f} | {r['dice_agreement']:.4f} / {r['min_dice_agreement']:.4f} | "
              f"{r['dice_vs_truth']:.4f} ({points:+.2f}) | {r['tensorrt_rtx'][:80]} | {r['trt10.3_predicted']} | "
              f"{r['cpu_b1_ms']:.1f} | {r['vs_fp32']:.2f} | {r['cpu_b1_ms'] / floor:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val1")
    p.add_argument("--calib-split", default="train1")
    p.add_argument("--heldout", type=int, default=32)
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    p.add_argument("--ladder", action="store_true", help="the export's INT8 candidates instead of the ways")
    args = p.parse_args()

    from llm4seg.checkpoint import load_checkpoint
    from llm4seg.data.datasets import load_dataset
    from llm4seg.export import rtx_build
    from llm4seg.export.onnx_export import onnx_from_model
    from llm4seg.export.heldout import calibration_sample
    from llm4seg.export.job import graph_backend
    from llm4seg.runtime.core.comparator import Comparator, inputs_from_frames, probs_from_frames
    from llm4seg.export.tensorrt import profile_shapes
    from llm4seg.export.trt_check import check_graph

    model = load_checkpoint(Path(args.checkpoint))
    cfg = model.config
    held = load_dataset(args.data, args.split, cfg.image_size)
    calib = load_dataset(args.data, args.calib_split, cfg.image_size)
    frames, masks = list(held.images[-args.heldout:]), held.masks[-args.heldout:]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        onnx_from_model(model, fp32, 17)
        backends = {"FP32 (reference)": graph_backend(fp32, cfg.to_dict(), threads=args.threads)}
        calib_x = inputs_from_frames(backends["FP32 (reference)"], calibration_sample(calib.images, args.calib_images))
        ways = (ladder_graphs if args.ladder else graphs)(fp32, Path(tmp), calib_x)
        with backends["FP32 (reference)"] as reference:
            comparator = Comparator(frames, probs_from_frames(reference, frames), cfg.threshold, masks)
        profile = profile_shapes((1, 1, 8), cfg.in_channels, cfg.image_size)
        for name, path in ways.items():
            backends[name] = backends.get(name) or graph_backend(path, cfg.to_dict(), "int8", threads=args.threads)
            stats = comparator.run(backends[name])[1]
            real = rtx_build.build_record(path, ("SM89",), profile)
            rows[name] = {"max_abs_err": stats["max_abs_err"], "dice_agreement": stats["dice_agreement"],
                          "min_dice_agreement": stats["min_dice_agreement"],
                          "dice_vs_truth": stats["dice_vs_truth"], "tensorrt_rtx": "built" if real["ok"] else
                          f"refused: {rtx_build.first_error(real)}" if real["ran"] else "not run",
                          "trt10.3_predicted": "ok" if check_graph(path, "10.3")["ok"] else "refused",
                          "size_mb": path.stat().st_size / 1e6}
        x1 = calib_x[:1]
        loaded = {n: b.load() for n, b in backends.items()}
        times = interleaved_ms({n: (lambda b=b: b.infer(x1)) for n, b in loaded.items()}, warmup=2, iterations=args.runs,
                               gap_s=0.02)
        for b in loaded.values():
            b.close()
    base = statistics.median(times["FP32 (reference)"])
    for name in rows:
        rows[name]["cpu_b1_ms"] = statistics.median(times[name])
        rows[name]["vs_fp32"] = statistics.median(times[name]) / base
    print(f"{cpu_name()}, {args.threads} threads; {len(frames)} held-out images of {held.name}; "
          f"{len(calib_x)} calibration images of {args.calib_split}; model {cfg.name} at {cfg.image_size}px")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
