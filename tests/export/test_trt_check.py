"""The static TensorRT parser check, pass/fail pinned for every artifact the export writes (issue 12, item 1)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from llm4seg.cli.main import app
from llm4seg.errors import ConfigError
from llm4seg.export.pipeline import ExportOptions, export_checkpoint
from llm4seg.export.trt_check import check_graph, resolve_version


@pytest.fixture(scope="module")
def opset23(tmp_path_factory, trained_checkpoint):
    out = tmp_path_factory.mktemp("opset23")
    export_checkpoint(trained_checkpoint, ExportOptions(out=out, opset=23, fp16=True, parity_images=2), log=lambda s: None)
    return out


@pytest.mark.parametrize("name", ["model.onnx", "model.fp16.onnx", "model.int8.onnx"])
@pytest.mark.parametrize("version", ["10.3", "10.15", "11"])
def test_opset17_artifacts_pass_every_target(exported, name, version):
    report = check_graph(exported[0] / name, version)
    assert report["ok"], report["findings"]
    recorded = json.loads((exported[0] / "manifest.json").read_text())["artifacts"][name]["tensorrt_check"]
    assert recorded[version]["ok"] is True


@pytest.mark.parametrize("name", ["model.onnx", "model.fp16.onnx"])
def test_opset23_fails_on_jetson_tensorrt_and_passes_on_10_15(opset23, name):
    old = check_graph(opset23 / name, "10.3")
    assert not old["ok"]
    problems = {(f["op"], f["fix"]) for f in old["findings"]}
    if name == "model.fp16.onnx":  # the FP32 graph keeps MatMul-Softmax attention (no FP32 Attention kernel)
        assert ("Attention", "export with --opset 17 (decomposed ops) for this TensorRT") in problems
    assert ("RMSNormalization", "export with --opset 17 (decomposed ops) for this TensorRT") in problems
    assert any("opset 23 is outside" in f["problem"] for f in old["findings"])
    assert check_graph(opset23 / name, "10.15")["ok"]


def _edited(src, dst, edit):
    model = onnx.load(str(src))
    edit(model.graph)
    onnx.save(model, str(dst))
    return dst


def test_non_zero_qdq_zero_point_fails(exported, tmp_path):
    def shift(graph):
        for init in graph.initializer:
            if "zero_point" in init.name:
                init.CopyFrom(numpy_helper.from_array(np.ones_like(numpy_helper.to_array(init)), init.name))
                return
    path = _edited(exported[0] / "model.int8.onnx", tmp_path / "zp.onnx", shift)
    report = check_graph(path, "10.15")
    assert not report["ok"] and any(f["problem"] == "zero point is not 0" for f in report["findings"])


def test_an_op_tensorrt_lacks_and_a_cubic_resize_fail(exported, tmp_path):
    def add_nodes(graph):
        graph.node.append(helper.make_node("Unique", ["prob"], ["uniq"], name="my_unique"))
        graph.node.append(helper.make_node("Resize", ["prob", "", "scales_c"], ["big"], name="my_resize", mode="cubic"))
        graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales_c"))
    path = _edited(exported[0] / "model.onnx", tmp_path / "bad.onnx", add_nodes)
    findings = check_graph(path, "10.15")["findings"]
    assert {"node": "my_unique", "op": "Unique"}.items() <= next(f for f in findings if f["op"] == "Unique").items()
    assert any(f["node"] == "my_resize" and "cubic" in f["problem"] for f in findings)


def test_versions_resolve_to_the_recorded_matrices():
    assert resolve_version("10.3") == "10.3" and resolve_version("10.8") == "10.3"
    assert resolve_version("10.16") == "10.15" and resolve_version("11.2") == "11"
    with pytest.raises(ConfigError):
        resolve_version("8.6")


def test_check_cli(exported, opset23):
    ok = CliRunner().invoke(app, ["check", str(exported[0] / "model.fp16.onnx"), "--trt", "10.3"])
    assert ok.exit_code == 0 and "ok: model.fp16.onnx" in ok.output
    bad = CliRunner().invoke(app, ["check", str(opset23 / "model.onnx"), "--trt", "10.3"])
    assert bad.exit_code == 1 and "would not parse on TensorRT 10.3" in bad.output and "hint:" in bad.output


@pytest.mark.parametrize("content", [b'{"artifacts": {}}\n', b"PK\x03\x04 not a graph", b""])
def test_check_cli_on_a_file_that_is_not_onnx_says_so(tmp_path, content):
    path = tmp_path / "model.pt2"
    path.write_bytes(content)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1 and "is not an ONNX graph" in result.output and "Traceback" not in result.output


def test_ops_inside_an_if_branch_are_checked(tmp_path):
    """Frames graphs resize inside If branches: an op there that TensorRT lacks must be found."""
    import onnx
    from onnx import TensorProto, helper

    from llm4seg.export.trt_check import check_graph

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    out = helper.make_tensor_value_info("b", TensorProto.FLOAT, None)
    unsupported = helper.make_graph([helper.make_node("RMSNormalization", ["x"], ["b"])], "then", [], [out])
    plain = helper.make_graph([helper.make_node("Relu", ["x"], ["b"])], "else", [], [out])
    cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
    graph = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=unsupported, else_branch=plain)],
                              "g", [x], [y], initializer=[cond])
    path = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    findings = check_graph(path, "10.3")["findings"]
    assert any(f["op"] == "RMSNormalization" for f in findings), findings  # no importer before 10.15


@pytest.mark.parametrize("fault", ["cycle", "dangling input", "tensor produced twice"])
def test_graph_structure_faults_are_found(tmp_path, fault):
    """Issue 33, item 12: a graph with a node cycle passed the static check while the real parser
    refused it ('Failed to sort the model topologically')."""
    import onnx
    from onnx import TensorProto, helper

    from llm4seg.export.trt_check import check_graph

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = {"cycle": [helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
                       helper.make_node("Relu", ["a"], ["b"], name="n2"), helper.make_node("Relu", ["b"], ["y"], name="n3")],
             "dangling input": [helper.make_node("Add", ["x", "ghost"], ["y"], name="n1")],
             "tensor produced twice": [helper.make_node("Relu", ["x"], ["a"], name="n1"),
                                       helper.make_node("Abs", ["x"], ["a"], name="n2"),
                                       helper.make_node("Relu", ["a"], ["y"], name="n3")]}[fault]
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]),
              str(path))
    report = check_graph(path, "10.3")
    expected = {"cycle": "cycle", "dangling input": "produced by nothing", "tensor produced twice": "more than once"}
    assert not report["ok"] and any(expected[fault] in f["problem"] for f in report["findings"]), report["findings"]
