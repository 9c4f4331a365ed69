"""ONNX graphs from a checkpoint: FP32 (`model.onnx`) and typed FP16 (`model.fp16.onnx`)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from llm4seg._optional import require
from llm4seg.errors import ExportError
from llm4seg.export.deploy import DeployNet
from llm4seg.fileio import atomic_path

SUPPORTED_OPSETS = (17, 23)


def _export(net: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with atomic_path(path) as tmp:
            if opset == 17:
                # The TorchScript exporter writes true opset 17 (the dynamo one silently writes 18).
                torch.onnx.export(net, (example,), str(tmp), dynamo=False, opset_version=17,
                                  input_names=["image"], output_names=["prob"],
                                  dynamic_axes={"image": {0: "batch"}, "prob": {0: "batch"}})
            else:
                # The dynamo exporter logs a warning per torchvision op it cannot register when
                # torchvision is absent; llm4seg uses none of them.
                logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
                batch = torch.export.Dim("batch", min=1, max=4096)
                program = torch.onnx.export(net, (example,), dynamo=True, opset_version=opset,
                                            input_names=["image"], output_names=["prob"],
                                            dynamic_shapes={"image": {0: batch}}, verbose=False)
                program.save(str(tmp))


def check_graph(path: Path, opset: int, channels: int, size: int) -> None:
    """Fail loudly on a silently fixed batch, a wrong opset or unexpected I/O."""
    onnx = require("onnx", "checking exported graphs")
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if opsets.get("ai.onnx") != opset:
        raise ExportError(f"{path.name} has opset {opsets.get('ai.onnx')}, asked for {opset}",
                          hint="the exporter changed the opset; report this with your torch version")
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if not dims[0].dim_param:
            raise ExportError(f"{path.name}: {value.name} has a fixed batch dimension {dims[0].dim_value}",
                              hint="the exporter fixed the batch; export with an example batch >= 2")
    in_dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    if in_dims != [channels, size, size]:
        raise ExportError(f"{path.name}: input shape {in_dims}, expected {[channels, size, size]}",
                          hint="re-export from the checkpoint")


def onnx_from_model(model, path: Path, opset: int = 17, half: bool = False) -> DeployNet:
    """Write `path` (FP32 or typed FP16 graph, FP32 I/O, dynamic batch); returns the DeployNet."""
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} is not supported", hint=f"choose one of {SUPPORTED_OPSETS} "
                          "(17: decomposed ops for any TensorRT 10.x and Jetson; 23: native ONNX ops)")
    cfg = model.config
    # Opset 23 has ONNX Attention and RMSNormalization (TensorRT >= 10.15); 17 stays decomposed.
    # ONNX Attention only in the FP16 graph: TensorRT has fused attention kernels for FP16/BF16, none
    # for FP32 (TensorRT-RTX 1.7 refused to build the FP32 graph with it), so FP32 keeps MatMul-Softmax.
    net = DeployNet(model, half=half, native_ops=opset >= 23, native_attention=opset >= 23 and half)
    example = torch.randn(2, cfg.in_channels, cfg.image_size, cfg.image_size)  # batch >= 2: see check_graph
    try:
        _export(net, example, path, opset)
    except Exception as exc:  # exporters raise many types; the message is what matters
        raise ExportError(f"ONNX export (opset {opset}) failed: {exc}", hint="try --opset 17") from exc
    check_graph(path, opset, cfg.in_channels, cfg.image_size)
    return net
