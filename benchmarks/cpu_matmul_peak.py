"""What onnxruntime's GEMMs reach on this CPU: the floor under the LLM stage's latency.

Times one MatMul of the LLaMA-1B MLP's gate/up shape (256 tokens x 2048 -> 16384, 8.6 GMAC,
most of the folded layer's work) in FP32, as static QDQ INT8 (QLinearMatMul after fusion) and
as dynamic INT8 (MatMulInteger), and prints GMAC/s and the implied milliseconds per GMAC.

Run: python -m benchmarks.cpu_matmul_peak [--threads 2] [--tokens 256 --k 2048 --n 16384]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from llm4seg.runtime.tools.bench import cpu_name


def fp32_matmul(m: int, k: int, n: int, w: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def median_ms(session, feeds, runs: int) -> float:
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


class _Reader:
    def __init__(self, x):
        self.items = iter([{"x": x}])

    def get_next(self):
        return next(self.items, None)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--k", type=int, default=2048)
    p.add_argument("--n", type=int, default=16384)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args()
    from onnxruntime import quantization as q

    rng = np.random.default_rng(0)
    m, k, n = args.tokens, args.k, args.n
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    gmac = m * k * n / 1e9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        onnx.save(fp32_matmul(m, k, n, w), str(fp32))
        static, dynamic = Path(tmp) / "static.onnx", Path(tmp) / "dynamic.onnx"
        q.quantize_static(str(fp32), str(static), _Reader(x), quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                          extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                         "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}})
        q.quantize_dynamic(str(fp32), str(dynamic), weight_type=q.QuantType.QInt8, per_channel=True)
        for name, path in (("FP32 MatMul", fp32), ("INT8 static QDQ (S8S8)", static),
                           ("INT8 dynamic (MatMulInteger)", dynamic)):
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            ms = median_ms(session, {"x": x}, args.runs)
            rows.append((name, ms, gmac / (ms / 1000)))
    print(f"# {cpu_name()}, {args.threads} threads, onnxruntime {ort.__version__}, MatMul [{m}x{k}] x [{k}x{n}] "
          f"= {gmac:.2f} GMAC, median of {args.runs}")
    print("| kernel | ms | GMAC/s | ms per GMAC |")
    print("|---|---:|---:|---:|")
    for name, ms, rate in rows:
        print(f"| {name} | {ms:.1f} | {rate:.1f} | {ms / gmac:.2f} |")


if __name__ == "__main__":
    main()
