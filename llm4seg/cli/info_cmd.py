"""`llm4seg info`: build a model and report parameters, MACs, the LLM layer and CPU latency."""

from __future__ import annotations

from typing import Annotated

import typer

from llm4seg.cli.options import AttentionOpt, ImageSizeOpt, JsonOpt, LayerOpt, LlmOpt, ModelOpt, PositionsOpt
from llm4seg.cli.render import human, print_json, print_table


def info(
    model: ModelOpt = "llm4seg",
    llm: LlmOpt = None,
    layer: LayerOpt = None,
    attention: AttentionOpt = None,
    positions: PositionsOpt = None,
    image_size: ImageSizeOpt = None,
    iterations: Annotated[int, typer.Option(help="Timed forward passes (0 skips timing).")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Build a model (offline, embedded LLM by default) and report what it costs.

    \b
    Example:
      llm4seg info --model llm4seg_random --llm shape:llama-3.2-1b
    """
    from llm4seg.models.registry import create_model
    from llm4seg.profile import model_report

    overrides = dict(llm=llm, layer=layer, attention=attention, positions=positions, image_size=image_size)
    if model.startswith("cmunext"):
        overrides = {"image_size": image_size}
    net = create_model(model, **overrides)
    report = model_report(net, latency=iterations > 0, iterations=max(iterations, 1))
    if json_out:
        print_json(report)
        return
    rows: list[list[str]] = []
    p = report["params"]
    rows.append(["parameters (total)", f"{p['total']:,}"])
    rows.append(["  trainable", f"{p['trainable']:,}"])
    rows.append(["  frozen (LLM layer)", f"{p['frozen']:,}"])
    rows.append(["MACs per image", human(report["macs"])])
    if report["llm"]:
        llm_info = report["llm"]
        rows.append(["LLM source", str(llm_info["source"])])
        rows.append(["LLM layer", f"{llm_info['layer']} of {llm_info['num_hidden_layers']} ({llm_info['arch']}, D={llm_info['hidden_size']})"])
        rows.append(["layer weights", f"{llm_info['init']}, {'trainable' if llm_info['trainable'] else 'frozen'}"])
        rows.append(["attention / positions", f"{llm_info['attention']} / {llm_info['positions']}"])
    if "cpu_latency_ms" in report:
        lat = report["cpu_latency_ms"]
        rows.append([f"CPU forward, batch 1, {report['torch_threads']} threads", f"{lat['p50']:.1f} ms (p50)"])
    print_table(f"{report['model']} at {report['image_size']}x{report['image_size']}", ["what", "value"], rows)
