"""`llm4seg check`: would TensorRT's ONNX parser of a given version take this graph? (No TensorRT needed.)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llm4seg.cli.options import JsonOpt
from llm4seg.cli.render import print_json, print_table, stdout


def check(
    artifact: Annotated[Path, typer.Argument(help="An ONNX graph (model.onnx, model.fp16.onnx, model.int8.onnx).")],
    trt: Annotated[str, typer.Option("--trt", help="TensorRT version to check against (10.3 = JetPack 6, 10.15, 11).")] = "10.3",
    json_out: JsonOpt = False,
) -> None:
    """Check ARTIFACT against the TensorRT ONNX parser's published support for a version:
    opset range, operators, Resize modes, Q/DQ zero points, types, dynamic batch.

    \\b
    Example:
      llm4seg check art/model.fp16.onnx --trt 10.3
    """
    from llm4seg.errors import ConfigError, ExportError
    from llm4seg.export.trt_check import check_graph

    if not Path(artifact).is_file():
        raise ConfigError(f"{artifact} does not exist", hint="pass an ONNX file written by `llm4seg export`")
    report = check_graph(artifact, trt)
    if json_out:
        print_json(report)
    else:
        assumed = " (support matrix ASSUMED, see source)" if report["assumed"] else ""
        stdout.print(f"{artifact} against TensorRT {report['version']} (matrix {report['resolved']}){assumed}",
                     soft_wrap=True, markup=False)
        if report["findings"]:
            print_table("findings", ["node", "op", "problem", "fix", "severity"],
                        [[f["node"], f["op"], f["problem"], f["fix"], f["severity"]] for f in report["findings"]])
        stdout.print(f"source: {report['source']}", soft_wrap=True, markup=False)
    if not report["ok"]:
        errors = [f for f in report["findings"] if f["severity"] == "error"]
        raise ExportError(f"{Path(artifact).name} would not parse on TensorRT {trt}: {len(errors)} problem(s), "
                          f"first: {errors[0]['node']} ({errors[0]['op']}): {errors[0]['problem']}",
                          hint=errors[0]["fix"])
    if not json_out:
        stdout.print(f"ok: {Path(artifact).name} uses only what TensorRT {trt}'s ONNX parser supports")
