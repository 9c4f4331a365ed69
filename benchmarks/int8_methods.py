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
  PYTHONPATH=/tmp/mosite python benchmarks/int8_methods.py RUN/checkpoints/best --data ../shared/datasets/busi \
      --split val1 --calib-split train1 [--heldout 32 --calib-images 16 --runs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_forward import cpu_name  # noqa: E402
from timing import interleaved_ms  # noqa: E402


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
    args = p.parse_args()

    from llm4seg.checkpoint import load_checkpoint
    from llm4seg.data.datasets import load_dataset
    from llm4seg.export import rtx_build
    from llm4seg.export.onnx_export import onnx_from_model
    from llm4seg.export.parity import agreement, normalised_batch, ort_probs, ort_session
    from llm4seg.export.pipeline import calibration_sample
    from llm4seg.export.tensorrt import profile_shapes
    from llm4seg.export.trt_check import check_graph

    model = load_checkpoint(Path(args.checkpoint))
    cfg = model.config
    held = load_dataset(args.data, args.split, cfg.image_size)
    calib = load_dataset(args.data, args.calib_split, cfg.image_size)
    x = normalised_batch(held.images[-args.heldout:], cfg)
    masks = held.masks[-args.heldout:]
    calib_x = normalised_batch(calibration_sample(calib.images, args.calib_images), cfg)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        onnx_from_model(model, fp32, 17)
        ways = graphs(fp32, Path(tmp), calib_x)
        reference = ort_probs(fp32, x)
        profile = profile_shapes((1, 1, 8), cfg.in_channels, cfg.image_size)
        for name, path in ways.items():
            stats = agreement(reference, ort_probs(path, x), cfg.threshold, masks)
            real = rtx_build.build_record(path, ("SM89",), profile)
            rows[name] = {"dice_agreement": stats["dice_agreement"], "min_dice_agreement": stats["min_dice_agreement"],
                          "dice_vs_truth": stats["dice_vs_truth"], "tensorrt_rtx": "built" if real["ok"] else
                          f"refused: {rtx_build.first_error(real)}" if real["ran"] else "not run",
                          "trt10.3_predicted": "ok" if check_graph(path, "10.3")["ok"] else "refused",
                          "size_mb": path.stat().st_size / 1e6}
        sessions = {n: ort_session(pth, args.threads) for n, pth in ways.items()}
        x1 = x[:1]
        times = interleaved_ms({n: (lambda s=s: s.run(["prob"], {"image": x1})) for n, s in sessions.items()},
                               warmup=2, iterations=args.runs)
    base = statistics.median(times["FP32 (reference)"])
    for name in rows:
        rows[name]["cpu_b1_ms"] = statistics.median(times[name])
        rows[name]["vs_fp32"] = statistics.median(times[name]) / base
    print(f"{cpu_name()}, {args.threads} threads; {len(x)} held-out images of {held.name}; "
          f"{len(calib_x)} calibration images of {args.calib_split}; model {cfg.name} at {cfg.image_size}px")
    print("| way | Dice vs FP32 (mean / min) | Dice vs truth | TensorRT-RTX 1.7 build | TRT 10.3 predicted | CPU b1 ms | vs FP32 |")
    print("|---|---|---|---|---|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['dice_agreement']:.4f} / {r['min_dice_agreement']:.4f} | {r['dice_vs_truth']:.4f} | "
              f"{r['tensorrt_rtx'][:80]} | {r['trt10.3_predicted']} | {r['cpu_b1_ms']:.1f} | {r['vs_fp32']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
