"""`llm4seg adopt-engine`: check an engine built on the target and add it to the export's manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llm4seg.cli.options import JsonOpt
from llm4seg.cli.render import print_json, stdout


def adopt_engine(
    plan: Annotated[Path, typer.Argument(metavar="PLAN", help="model.fp16.plan or model.int8.plan, built from the export's recipe.")],
    json_out: JsonOpt = False,
) -> None:
    """On the device that built PLAN (needs tensorrt and cuda-python, not torch): compare it with its
    ONNX graph on seeded inputs and record it in manifest.json, so bench and video accept it.

    \b
    Example (on a Jetson, in the artifact folder):
      trtexec --onnx=model.fp16.onnx --saveEngine=model.fp16.plan --stronglyTyped ...
      llm4seg adopt-engine model.fp16.plan
    """
    from llm4seg.runtime.tools.adopt import adopt_engine as adopt
    from llm4seg.runtime.core.backends.engine_key import version_field

    entry = adopt(plan)
    if json_out:
        print_json(entry)
        return
    p = entry["adoption"]
    engine = entry["engine"]
    product = engine.get("product", "TensorRT")
    stdout.print(f"adopted {plan}: {product} {engine[version_field(product)]} on {engine['gpu_name']}, "
                 f"mask agreement {p['dice_agreement']:.4f} and max probability error {p['max_abs_err']:.2e} with "
                 f"{p['reference']} on {p['n']} seeded random frames", soft_wrap=True)
