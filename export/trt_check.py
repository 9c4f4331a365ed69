"""Static TensorRT compatibility check of an ONNX graph, without TensorRT.

Checks a graph against what the TensorRT ONNX parser of a given version imports (data in
`data/tensorrt_onnx_support.json`, with the version and source each list was read from): the
ai.onnx opset range, operator types, each operator's input type against the matrix's type
column (DequantizeLinear takes INT8/FP8/INT4, not INT32), Resize modes, Q/DQ zero points (TensorRT requires 0),
Reduce* axes given as initializers, tensor types (UINT8 only as network I/O, DOUBLE cast down),
and a dynamic batch with static image dimensions for the optimization profile. Each finding
names the node and the fix. This predicts the parser's refusals; it is not TensorRT.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from llm4seg._optional import require
from llm4seg.errors import ConfigError

DATA = Path(__file__).with_name("data") / "tensorrt_onnx_support.json"
SUPPORTED_TYPES = {"FLOAT", "FLOAT16", "BFLOAT16", "INT32", "INT64", "INT8", "BOOL", "UINT8", "DOUBLE", "INT4",
                   "FLOAT8E4M3FN"}


@dataclass
class Finding:
    """One reason the parser would refuse the graph (severity 'error') or degrade it ('warning')."""

    node: str
    op: str
    problem: str
    fix: str
    severity: str = "error"


@lru_cache(maxsize=1)
def support_data() -> dict[str, Any]:
    """The recorded TensorRT ONNX-parser support matrix (data/trt_support.json)."""
    return json.loads(DATA.read_text())


def target_versions() -> list[str]:
    """The TensorRT versions the static check predicts for."""
    return list(support_data()["versions"])


def resolve_version(version: str) -> str:
    """'10.3' -> '10.3'; '10.16' -> '10.15' (the newest recorded one not above it); '11.2' -> '11'."""
    versions = support_data()["versions"]
    if version in versions:
        return version
    try:
        wanted = tuple(int(p) for p in version.split("."))
    except ValueError:
        raise ConfigError(f"--trt {version!r} is not a version", hint=f"e.g. --trt 10.3; recorded: {', '.join(versions)}") from None
    known = sorted((tuple(int(p) for p in v.split(".")), v) for v in versions)
    below = [v for t, v in known if t <= wanted]
    if not below or (wanted[0] < 10):
        raise ConfigError(f"TensorRT {version} is older than any recorded support matrix",
                          hint=f"recorded: {', '.join(versions)}; llm4seg targets TensorRT 10 and 11")
    return below[-1]


def _constants(graph) -> dict[str, Any]:
    onnx = require("onnx", "the TensorRT compatibility check")
    values = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = onnx.numpy_helper.to_array(attr.t)
    return values


def _node_findings(node, ops: set[str], data: dict[str, Any], constants: dict[str, Any], version: str) -> list[Finding]:
    name, op = node.name or node.output[0], node.op_type
    attrs = {a.name: (a.s.decode() if a.type == a.STRING else a.i) for a in node.attribute}
    if node.domain not in ("", "ai.onnx"):
        return [Finding(name, op, f"custom domain {node.domain!r}", "re-export without custom ops (no plugin is shipped)")]
    if op not in ops:
        fix = ("export with --opset 17 (decomposed ops) for this TensorRT" if op in ("Attention", "RMSNormalization",
               "RotaryEmbedding") else "this op has no TensorRT importer in that version; report it")
        return [Finding(name, op, f"{op} is not supported by TensorRT {version}", fix)]
    found = []
    if op in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
        zp = constants.get(node.input[2])
        if zp is None or zp.any():
            found.append(Finding(name, op, "zero point is not 0" if zp is not None else "zero point is not a constant",
                                 "quantize symmetrically (llm4seg export --int8 does)"))
    if op == "Resize":
        if attrs.get("mode", "nearest") not in data["resize_modes"]:
            found.append(Finding(name, op, f"Resize mode {attrs.get('mode')!r}", "use nearest or linear upsampling"))
        ctm = attrs.get("coordinate_transformation_mode", "half_pixel")
        if ctm not in data["resize_coordinate_modes"]:
            found.append(Finding(name, op, f"coordinate_transformation_mode {ctm!r}", "use half_pixel or align_corners"))
        if attrs.get("antialias", 0):
            found.append(Finding(name, op, "antialiasing", "resize without antialias"))
    if op.startswith("Reduce") and len(node.input) > 1 and node.input[1] and node.input[1] not in constants:
        found.append(Finding(name, op, "axes are computed at run time", "make the axes an initializer"))
    return found


def _tensor_types(graph) -> dict[str, str]:
    """Tensor name -> ONNX type name, for every tensor whose type is known after shape inference."""
    onnx = require("onnx", "the TensorRT compatibility check")
    name_of = onnx.TensorProto.DataType.Name
    types = {v.name: name_of(v.type.tensor_type.elem_type) for v in (*graph.input, *graph.output, *graph.value_info)
             if v.type.tensor_type.elem_type}
    types.update({i.name: name_of(i.data_type) for i in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = name_of(attr.t.data_type)
    return types


def _input_type_findings(graph, data: dict[str, Any], version: str) -> list[Finding]:
    """Each node's first input against the type column of the parser's matrix (e.g. an INT32
    DequantizeLinear input, which onnxruntime writes for quantized biases, is refused)."""
    columns = data.get("input_types", {}).get("by_operator", {})
    types = _tensor_types(graph)
    found = []
    for node in graph.node:
        allowed = columns.get(node.op_type)
        kind = types.get(node.input[0]) if node.input and node.input[0] else None
        if allowed and kind and kind not in allowed:
            name = node.name or node.output[0]
            fix = ("keep biases in float (quantize with QuantizeBias off; llm4seg export --int8 does)"
                   if node.op_type == "DequantizeLinear" else f"cast {node.input[0]} to one of {', '.join(allowed)}")
            found.append(Finding(name, node.op_type, f"input {node.input[0]} has type {kind}; TensorRT {version}'s "
                                 f"{node.op_type} takes {', '.join(allowed)}", fix))
    return found


def _type_findings(graph) -> list[Finding]:
    onnx = require("onnx", "the TensorRT compatibility check")
    name_of = onnx.TensorProto.DataType.Name
    io = {v.name for v in (*graph.input, *graph.output)}
    found = []
    for value in (*graph.input, *graph.output, *graph.value_info):
        kind = name_of(value.type.tensor_type.elem_type)
        if kind not in SUPPORTED_TYPES:
            found.append(Finding(value.name, "-", f"tensor type {kind}", "use FLOAT, FLOAT16, INT32 or INT64"))
        elif kind == "UINT8" and value.name not in io:
            found.append(Finding(value.name, "-", "UINT8 inside the network", "cast to INT32 or FLOAT"))
        elif kind == "DOUBLE":
            found.append(Finding(value.name, "-", "DOUBLE is cast down to FLOAT by TensorRT", "export in FLOAT",
                                 "warning"))
    return found


def _profile_findings(graph) -> list[Finding]:
    found = []
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param:
            found.append(Finding(value.name, "-", "the batch dimension is fixed", "re-export (llm4seg keeps it dynamic)",
                                 "warning"))
        # A frames graph's uint8 frames take any H x W (its optimization profile bounds them).
        frames_input = value.type.tensor_type.elem_type == 2  # UINT8
        if not frames_input and any(d.dim_param or d.dim_value <= 0 for d in dims[1:]):
            found.append(Finding(value.name, "-", "an image dimension is dynamic", "export at a fixed image size"))
    return found


def all_nodes(graph) -> list[Any]:
    """Every node of a graph and of the subgraphs its nodes hold (an If's branches), depth first."""
    found = []
    for node in graph.node:
        found.append(node)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                found += all_nodes(sub)
    return found


def _structure_findings(graph) -> list[Finding]:
    """Graph-structure faults every parser refuses (issue 33, item 12): a tensor produced twice, an
    input nothing produces, a cycle (TensorRT: 'Failed to sort the model topologically')."""
    found, producer = [], {}
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    for node in graph.node:
        for out in node.output:
            if out in producer or out in known - {""}:
                found.append(Finding(node.name or out, node.op_type, f"tensor {out!r} is produced more than once",
                                     "give every tensor one producer (re-export)"))
            producer[out] = node
    for node in graph.node:
        for name in node.input:
            if name not in known and name not in producer:
                found.append(Finding(node.name or node.output[0], node.op_type, f"input {name!r} is produced by "
                                     "nothing (no node, initializer or graph input)", "re-export the graph"))
    # Kahn's sort over the top-level nodes: whatever cannot be placed sits on a cycle.
    needs = {id(n): {i for i in n.input if i in producer} for n in graph.node}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in needs[id(node)]:
            consumers.setdefault(name, []).append(node)
    ready = [n for n in graph.node if not needs[id(n)]]
    while ready:
        for out in ready.pop().output:
            for other in consumers.pop(out, []):
                needs[id(other)].discard(out)
                if not needs[id(other)]:
                    ready.append(other)
    stuck = [n for n in graph.node if needs[id(n)]]
    if stuck:
        found.append(Finding(stuck[0].name or stuck[0].output[0], stuck[0].op_type,
                             f"{len(stuck)} node(s) sit on a cycle: the graph cannot be sorted topologically",
                             "re-export the graph (a cycle is never a valid ONNX graph)"))
    return found


def check_graph(path: Path | str, version: str) -> dict[str, Any]:
    """{'version', 'resolved', 'ok', 'findings': [...], 'source'} for the ONNX file at `path`."""
    onnx = require("onnx", "the TensorRT compatibility check")
    resolved = resolve_version(version)
    data = support_data()
    target = data["versions"][resolved]
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    findings: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    lo, hi = target["opset"]
    if opset is None or not lo <= opset <= hi:
        findings.append(Finding("graph", "-", f"opset {opset} is outside TensorRT {resolved}'s range {lo}-{hi}",
                                "export with --opset 17" if opset and opset > hi else "re-export with opset 17"))
    constants = _constants(graph)
    ops = set(target["operators"])
    for node in all_nodes(graph):
        findings += _node_findings(node, ops, data, constants, resolved)
    findings += _input_type_findings(graph, data, resolved)
    findings += _type_findings(graph) + _profile_findings(graph) + _structure_findings(graph)
    return {"version": version, "resolved": resolved, "assumed": bool(target.get("assumed")),
            "ok": not any(f.severity == "error" for f in findings), "findings": [asdict(f) for f in findings],
            "source": target["source"]}
