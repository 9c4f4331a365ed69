"""`llm4seg check`: does NVIDIA's real builder take this graph (TensorRT-RTX, where installed), and would
TensorRT 10.x/11's ONNX parser of a given version (predicted from its support matrix)?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llm4seg.cli.options import JsonOpt
from llm4seg.cli.render import print_json, print_table, stdout


def check(
    artifact: Annotated[Path, typer.Argument(metavar="ARTIFACT", help="An ONNX graph (model.onnx, model.fp16.onnx, model.int8.onnx).")],
    trt: Annotated[str, typer.Option("--trt", help="TensorRT version to predict (10.3 = JetPack 6, 10.15, 11).")] = "10.3",
    rtx_targets: Annotated[str, typer.Option("--rtx-targets", help="Compute capabilities for the real TensorRT-RTX build, where it is installed.")] = "SM89",
    json_out: JsonOpt = False,
) -> None:
    """Check ARTIFACT two ways: the real TensorRT-RTX parser and builder (where installed), and the
    prediction for a TensorRT 10.x/11 version from its published support matrix (opset range,
    operators, input types, Resize modes, Q/DQ zero points, dynamic batch).

    Example:

      llm4seg check art/model.fp16.onnx --trt 10.3
    """
    from llm4seg.errors import ConfigError, ExportError
    from llm4seg.export import rtx_build
    from llm4seg.export.trt_check import check_graph

    if not Path(artifact).is_file():
        raise ConfigError(f"{artifact} does not exist", hint="pass an ONNX file written by `llm4seg export`")
    profile = _profile(artifact)  # also refuses a file that is not an ONNX graph, with the fix
    report = check_graph(artifact, trt)
    real = rtx_build.build_record(artifact, rtx_build.parse_targets(rtx_targets), profile)
    if json_out:
        print_json({**report, "tensorrt_rtx_build": real})
    else:
        _render(artifact, report, real)
    if real["ran"] and not real["ok"]:
        raise rtx_build.refusal(Path(artifact).name, real, hint="fix the graph (or report it with the graph); "
                                "TensorRT-RTX's own errors are in the message")
    if not report["ok"]:
        errors = [f for f in report["findings"] if f["severity"] == "error"]
        raise ExportError(f"{Path(artifact).name} would not parse on TensorRT {trt}: {len(errors)} problem(s), "
                          f"first: {errors[0]['node']} ({errors[0]['op']}): {errors[0]['problem']}",
                          hint=errors[0]["fix"])
    if not json_out:
        stdout.print(f"ok: {Path(artifact).name} uses only what TensorRT {trt}'s ONNX parser supports (predicted)"
                     + (f" and {real['product']} {real['version']} built it" if real["ran"] else ""), soft_wrap=True)


def _profile(artifact: Path) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes: the manifest's batch range where the graph has one, else batch 1;
    a frames graph's NHWC profile (any frame size up to 1080p) from its manifest entry."""
    from llm4seg.runtime.core.manifest import MANIFEST_NAME, load_manifest

    if not (Path(artifact).parent / MANIFEST_NAME).is_file():  # any ONNX graph may be checked: batch 1
        entry, sizes = None, (1, 1, 1)
    else:  # an export's graph: its entry, checked and sealed (a damaged manifest is an error, not batch 1)
        entry = load_manifest(artifact)
        sizes = entry.batch
    if entry is not None and entry.frames is not None:
        from llm4seg.export.frames_graph import frames_profile

        _input_dims(artifact, fixed=False)  # still refuses a file that is not an ONNX graph
        return frames_profile(sizes, entry.image_size, entry.frames.form)
    dims = _input_dims(artifact)
    return tuple((b, *dims) for b in sizes)


def _input_dims(artifact: Path, fixed: bool = True) -> tuple[int, ...]:
    from llm4seg._optional import require
    from llm4seg.errors import ConfigError

    onnx = require("onnx", "the TensorRT check")
    try:
        graph = onnx.load(str(artifact), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001  (protobuf raises its own DecodeError and others)
        raise ConfigError(f"{artifact} is not an ONNX graph ({type(exc).__name__})",
                          hint="pass model.onnx, model.fp16.onnx or model.int8.onnx from `llm4seg export`") from None
    if not graph.input or not graph.node:
        raise ConfigError(f"{artifact} is not an ONNX graph (no inputs or nodes)",
                          hint="pass model.onnx, model.fp16.onnx or model.int8.onnx from `llm4seg export`")
    _refuse_outside_data(artifact, graph)
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
    if fixed and (not dims or any(d <= 0 for d in dims)):
        raise ConfigError(f"{artifact}'s input has no fixed image dimensions ({dims})",
                          hint="export at a fixed image size (llm4seg export does)")
    return tuple(dims)


def _refuse_outside_data(artifact: Path, graph: Any) -> None:
    """A ConfigError for a tensor whose external data lies outside the graph's folder (absolute, or
    '..' leading out): neither the check nor the builder reads a file the graph points elsewhere."""
    from llm4seg.errors import ConfigError

    folder = Path(artifact).resolve().parent
    tensors = list(graph.initializer) + [a.t for n in graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location is None:
            continue
        target = (folder / location).resolve()
        if Path(location).is_absolute() or folder not in target.parents:
            raise ConfigError(f"{Path(artifact).name}: tensor {tensor.name!r} keeps its data at {location!r}, "
                              f"outside the graph's folder {folder}",
                              hint="a graph's external data must sit in its own folder; re-export the graph "
                                   "(llm4seg export writes its weights inside the .onnx)")


def _render(artifact: Path, report: dict, real: dict) -> None:
    from llm4seg.export import rtx_build

    stdout.print(f"real build: {rtx_build.summary(real)}", soft_wrap=True, markup=False)
    assumed = " (support matrix ASSUMED, see source)" if report["assumed"] else ""
    stdout.print(f"prediction: {artifact} against TensorRT {report['version']} (matrix {report['resolved']}){assumed}",
                 soft_wrap=True, markup=False)
    if report["findings"]:
        print_table("findings", ["node", "op", "problem", "fix", "severity"],
                    [[f["node"], f["op"], f["problem"], f["fix"], f["severity"]] for f in report["findings"]])
    stdout.print(f"source: {report['source']}", soft_wrap=True, markup=False)
