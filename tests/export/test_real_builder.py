"""The real NVIDIA builder in the loop (issue 18): TensorRT-RTX parses and builds every exported
graph and every INT8 candidate, and the static TensorRT 10.x check refuses whatever it refuses.

TensorRT-RTX is in the test environment (`llm4seg[dev]` pulls `llm4seg[rtx]`); under CI a missing
TensorRT-RTX fails these tests instead of skipping them, so a green CI means they ran.
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from llm4seg.errors import ExportError
from llm4seg.export import rtx_build
from llm4seg.export.trt_check import check_graph

HAS_RTX = importlib.util.find_spec("tensorrt_rtx_bindings") is not None
if not HAS_RTX and os.environ.get("CI") == "true":
    raise RuntimeError("TensorRT-RTX must be installed under CI (pip install 'llm4seg[rtx]'): these tests may not skip")
pytestmark = pytest.mark.skipif(not HAS_RTX, reason="TensorRT-RTX is not installed: pip install 'llm4seg[rtx]'")

PROFILE = ((1, 3, 64, 64), (1, 3, 64, 64), (2, 3, 64, 64))


def real(path) -> dict:
    """TensorRT-RTX's verdict: parse, and where it parses, a build for SM89."""
    return rtx_build.build_record(path, ("SM89",), PROFILE)


def refused_by_check(path) -> dict[str, bool]:
    return {v: not check_graph(path, v)["ok"] for v in ("10.3", "10.15")}


# -- the corpus ------------------------------------------------------------------------------------

def _quantized(src, dst, calib, **extra):
    """`src` quantized by onnxruntime on every Conv/weight MatMul, with `extra` options on top of ours."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from llm4seg.export.int8 import _Reader, quantizable_nodes

    options = {"ActivationSymmetric": True, "WeightSymmetric": True, **extra}
    quantize_static(str(src), str(dst), _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_quantize=list(quantizable_nodes(onnx.load(str(src)))),
                    calibrate_method=CalibrationMethod.MinMax, extra_options=options)
    return dst


def _graph(path, nodes, inits=(), in_type=TensorProto.FLOAT, out_type=TensorProto.FLOAT, opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", in_type, ["batch", 3, 64, 64])],
                              [helper.make_tensor_value_info("prob", out_type, None)], list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def broken_graphs(tmp, int8_src: str):
    """Deliberately broken graphs, each with the reason TensorRT 10.x would refuse it too."""
    int8 = onnx.load(int8_src)
    for init in int8.graph.initializer:  # a non-zero Q/DQ zero point
        if "zero_point" in init.name:
            init.CopyFrom(numpy_helper.from_array(np.ones_like(numpy_helper.to_array(init)), init.name))
            break
    onnx.save(int8, str(tmp / "zero_point.onnx"))
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    bias32 = numpy_helper.from_array(np.arange(3, dtype=np.int32), "bias32")
    return {
        "zero_point.onnx": tmp / "zero_point.onnx",
        "unique.onnx": _graph(tmp / "unique.onnx", [helper.make_node("Unique", ["image"], ["prob"], name="u")]),
        "int32_dq.onnx": _graph(tmp / "int32_dq.onnx", [
            helper.make_node("DequantizeLinear", ["bias32", "scale"], ["b"], name="bias_dq"),
            helper.make_node("Reshape", ["b", "shape"], ["b4"], name="r"),
            helper.make_node("Add", ["image", "b4"], ["prob"], name="add")],
            [bias32, scale, numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "shape")]),
        "int32_matmul.onnx": _graph(tmp / "int32_matmul.onnx", [
            helper.make_node("Cast", ["image"], ["i"], to=TensorProto.INT32, name="c"),
            helper.make_node("MatMul", ["i", "i"], ["m"], name="mm_int32"),
            helper.make_node("Cast", ["m"], ["prob"], to=TensorProto.FLOAT, name="c2")]),
        "cubic_resize.onnx": _graph(tmp / "cubic_resize.onnx", [
            helper.make_node("Resize", ["image", "", "scales"], ["prob"], mode="cubic", name="rs")],
            [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]),
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, exported, trained_checkpoint):
    """Today's artifacts at opset 17 and 23, every INT8 candidate, onnxruntime's default INT8 (INT32
    biases) and the broken graphs: name -> path."""
    from llm4seg.export.int8 import CANDIDATES, quantizable_nodes, quantize_nodes
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint

    tmp = tmp_path_factory.mktemp("corpus")
    art = exported[0]
    graphs = {f"17/{n}": art / n for n in ("model.onnx", "model.fp16.onnx", "model.int8.onnx")}
    o23 = tmp / "o23"
    export_checkpoint(trained_checkpoint, ExportOptions(out=o23, opset=23, fp16=True, parity_images=2), log=lambda s: None)
    graphs.update({f"23/{n}": o23 / n for n in ("model.onnx", "model.fp16.onnx")})
    calib = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    nodes = quantizable_nodes(onnx.load(str(art / "model.onnx")))
    for i, cand in enumerate(CANDIDATES):
        chosen = [n for n, w in nodes.items() if cand.keep(w)]
        if chosen:
            graphs[f"candidate {cand.name}"] = tmp / f"cand{i}.onnx"
            quantize_nodes(art / "model.onnx", tmp / f"cand{i}.onnx", calib, chosen, tmp / "calib.cache")
    graphs["onnxruntime default INT8 (INT32 biases)"] = _quantized(art / "model.onnx", tmp / "ort_default.onnx", calib)
    graphs.update(broken_graphs(tmp, str(art / "model.int8.onnx")))
    return {name: (path, real(path)) for name, path in graphs.items()}


# -- the tests -------------------------------------------------------------------------------------

def test_every_real_refusal_is_a_refusal_of_the_static_check(corpus):
    """What TensorRT-RTX refuses for a reason TensorRT 10.x shares, the static check (10.3 and 10.15)
    refuses too. The other way round may differ (the check is stricter where 10.3 is older)."""
    refused = {name: record for name, (path, record) in corpus.items() if not record["ok"]}
    assert {"onnxruntime default INT8 (INT32 biases)", "int32_dq.onnx", "unique.onnx"} <= set(refused)
    missed = {name: rtx_build.first_error(record) for name, record in refused.items()
              if not all(refused_by_check(corpus[name][0]).values())}
    assert missed == {}


def test_todays_artifacts_and_int8_candidates_parse_build_and_pass_the_check(corpus):
    for name, (path, record) in corpus.items():
        if name.startswith(("17/", "23/", "candidate ")):
            assert record["ok"], (name, rtx_build.first_error(record))
            assert record["parse"]["layers"] > 0 and record["targets"]["SM89"]["engine_bytes"] > 0
        if name.startswith(("17/", "candidate ")):
            assert not any(refused_by_check(path).values()), (name, check_graph(path, "10.3")["findings"])


def test_opset23_builds_on_rtx_while_the_check_predicts_jetson_refuses(corpus):
    """Where the two products differ the check says which it predicts: TensorRT-RTX imports ONNX
    Attention/RMSNormalization; TensorRT 10.3 (JetPack 6) has neither, so the check refuses it."""
    path, record = corpus["23/model.onnx"]
    assert record["ok"]
    findings = check_graph(path, "10.3")["findings"]
    assert any(f["op"] in ("Attention", "RMSNormalization") for f in findings)


def test_int32_dequantize_fails_both_with_the_builders_own_message(corpus):
    path, record = corpus["onnxruntime default INT8 (INT32 biases)"]
    error = rtx_build.refusal("model.int8.onnx", record)
    assert "input has type Int32 but must have type" in error.message and "refused it (parse)" in error.message
    assert "cudaError" not in rtx_build.first_error(record)  # the no-driver noise is not the reason
    findings = check_graph(path, "10.3")["findings"]
    assert any(f["op"] == "DequantizeLinear" and "INT32" in f["problem"] for f in findings)
    path, _ = corpus["int32_dq.onnx"]
    assert any("QuantizeBias" in f["fix"] for f in check_graph(path, "10.3")["findings"])


def test_manifest_records_the_real_build_apart_from_the_prediction(exported):
    entries = json.loads((exported[0] / "manifest.json").read_text())["artifacts"]
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx"):
        build = entries[name]["tensorrt_rtx_build"]
        assert build["product"] == "TensorRT-RTX" and build["ran"] and build["ok"] and build["version"].startswith("1.")
        assert build["targets"]["SM89"]["engine_bytes"] > 0 and build["parse"]["layers"] > 0
        assert set(entries[name]["tensorrt_check"]) == {"10.3", "10.15", "11"}  # the prediction, under its own key
    ladder = entries["model.int8.onnx"]["int8"]["candidates"]
    assert ladder and all(row["tensorrt_rtx"] == "built" for row in ladder)


def test_export_fails_when_the_builder_refuses_every_int8_candidate(trained_checkpoint, synthetic_folder, tmp_path,
                                                                    monkeypatch):
    """With onnxruntime's default INT32 bias Q/DQ, the real builder refuses each candidate: INT8 is
    marked refused (the candidate table says why) and FP32 stays, never shipped as TensorRT-ready."""
    from llm4seg.export import int8
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint

    def int32_biases(pre, out, calib, nodes, cache):
        return _quantized(pre, out, calib)  # onnxruntime's defaults: INT32 bias DequantizeLinear

    monkeypatch.setattr(int8, "quantize_nodes", int32_biases)
    out = tmp_path / "art"
    with pytest.raises(ExportError, match="no INT8 candidate.*TensorRT-RTX refused"):
        export_checkpoint(trained_checkpoint, ExportOptions(out=out, int8=True, calib=str(synthetic_folder),
                                                            parity_images=4, calib_images=4, max_int8_drop=0.5,
                                                            min_agreement=0.5), log=lambda s: None)
    refused = json.loads((out / "manifest.json").read_text())["int8_refused"]["candidates"]
    assert refused and all(row["tensorrt_rtx"] == "refused" and not row["passed"] for row in refused)
    assert not (out / "model.int8.onnx").exists()


def test_unknown_rtx_target_is_refused_naming_the_offered_ones():
    from llm4seg.errors import ConfigError

    assert rtx_build.parse_targets("sm86, SM89") == ("SM86", "SM89")
    with pytest.raises(ConfigError, match="SM90") as info:
        rtx_build.parse_targets("SM90")
    assert "SM89" in info.value.hint


def test_check_cli_reports_the_real_build_beside_the_prediction(exported, corpus):
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    ok = CliRunner().invoke(app, ["check", str(exported[0] / "model.int8.onnx"), "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["ok"] and report["tensorrt_rtx_build"]["ok"] and report["tensorrt_rtx_build"]["targets"]["SM89"]
    bad = CliRunner().invoke(app, ["check", str(corpus["onnxruntime default INT8 (INT32 biases)"][0])])
    assert bad.exit_code == 1 and "real build: TensorRT-RTX" in bad.output and "input has type Int32" in bad.output
    # A frames graph (dynamic frame size) is checked with its NHWC profile from the manifest.
    frames = CliRunner().invoke(app, ["check", str(exported[0] / "model.fp16.frames.onnx"), "--json"])
    assert frames.exit_code == 0, frames.output
    built = json.loads(frames.stdout)["tensorrt_rtx_build"]
    assert built["ok"] and built["profile"][2][1:] == [1080, 1920, 3]
