"""`model.pt2`: the folded deployment graph as a torch.export program, for the runtime's torch backend.

The runtime loads it with `torch.export.load` alone: no llm4seg model, checkpoint, training or
export code is needed to run it (the one-way door). The program is FP32 with a dynamic batch;
on a GPU the backend runs it under FP16 autocast, which keeps norms and softmax in FP32.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from llm4seg.errors import ExportError
from llm4seg.fileio import atomic_path
from llm4seg.export.deploy import DeployNet


def program_from_model(model, path: Path, max_batch: int) -> DeployNet:
    """Write `path` (torch.export of the folded FP32 graph, batch 1..max_batch); returns the DeployNet."""
    cfg = model.config
    net = DeployNet(model)
    example = torch.randn(2, cfg.in_channels, cfg.image_size, cfg.image_size)  # batch >= 2 keeps it dynamic
    batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(net, (example,), dynamic_shapes={"image": {0: batch}})
            with atomic_path(path) as tmp:  # keeps the .pt2 suffix torch.export.save wants
                torch.export.save(program, str(tmp))
    except Exception as exc:  # torch.export raises many types; the message is what matters
        raise ExportError(f"torch.export of the deployment graph failed: {exc}",
                          hint="export without --pt2 (the ONNX artifacts do not need it) and report this") from exc
    return net
