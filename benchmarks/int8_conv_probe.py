"""Does INT8 on the CNN's largest convolutions pay on this CPU? (beyond the export's ladder)

Starts from the export's kept INT8 set (the LLM MLP) and adds the largest regular convolutions
by multiply-adds, then measures mask Dice agreement with FP32 and batch-1 latency in onnxruntime.

Run: python -m benchmarks.int8_conv_probe --checkpoint CKPT --onnx ART/model.onnx --data DIR --split val1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnx
from onnx import shape_inference as onnx_shapes
from onnxruntime.quantization import shape_inference

from llm4seg.runtime.tools.bench import cpu_name

import llm4seg
from llm4seg.data.datasets import load_dataset
from llm4seg.export import int8
from llm4seg.export.job import graph_backend
from llm4seg.runtime.core.comparator import Comparator, inputs_from_frames, probs_from_frames
from llm4seg.runtime.core.stats import median_ms


def latency_ms(backend, x1) -> float:
    """Median batch-1 latency of a backend (7 runs after one warm-up)."""
    with backend:
        return median_ms(lambda: backend.infer(x1), warmup=1, iterations=7)


def conv_macs(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx_shapes.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    macs = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in weights and node.output[0] in shapes:
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            out, w = shapes[node.output[0]], weights[node.input[1]]
            if groups < w[0]:  # depthwise convs stay FP32: no INT8 kernel gain expected
                macs[node.name] = out[2] * out[3] * w[0] * w[1] * w[2] * w[3]
    return macs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--onnx", required=True, help="The export's model.onnx for this checkpoint.")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default=None)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    cfg = llm4seg.load_checkpoint(args.checkpoint).config
    pool = load_dataset(args.data, args.split, cfg.image_size)
    held = slice(len(pool) - args.images, len(pool))
    frames = list(pool.images[held])
    fp32 = graph_backend(Path(args.onnx), cfg.to_dict(), threads=args.threads)
    calib_x, x1 = inputs_from_frames(fp32, pool.images[:16]), inputs_from_frames(fp32, frames[:1])
    with fp32:
        comparator = Comparator(frames, probs_from_frames(fp32, frames), cfg.threshold)
    tmp = Path(tempfile.mkdtemp())
    pre = tmp / "pre.onnx"
    shape_inference.quant_pre_process(args.onnx, str(pre), skip_symbolic_shape=True)
    model = onnx.load(str(pre))
    nodes = int8.quantizable_nodes(model)
    mlp = [n for n, w in nodes.items() if w in int8.MLP_WEIGHTS]
    macs = conv_macs(model)
    biggest = sorted(macs, key=lambda n: -macs[n])
    print(f"# {cpu_name()}, {args.threads} threads, batch 1, {len(frames)} held-out images")
    print("| INT8 set | nodes | conv GMAC in INT8 | Dice agreement | ms |")
    print("|---|---:|---:|---:|---:|")
    print(f"| none (model.onnx) | 0 | 0 | 1.0000 | {latency_ms(fp32, x1):.1f} |")
    for label, convs in (("LLM MLP", []), ("LLM MLP + 3 largest convs", biggest[:3]),
                         ("LLM MLP + 6 largest convs", biggest[:6]), ("LLM MLP + all regular convs", biggest)):
        out = tmp / f"trial{len(convs)}.onnx"
        int8.quantize_nodes(pre, out, calib_x, mlp + convs, tmp / "calib.cache")
        trial = graph_backend(out, cfg.to_dict(), "int8", threads=args.threads)
        stats = comparator.run(trial)[1]
        gmac = sum(macs[n] for n in convs) / 1e9
        print(f"| {label} | {len(mlp) + len(convs)} | {gmac:.2f} | {stats['dice_agreement']:.4f} | "
              f"{latency_ms(trial, x1):.1f} |", flush=True)


if __name__ == "__main__":
    main()
