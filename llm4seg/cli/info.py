"""`llm4seg info`: build a model and report parameters, MACs, the LLM layer and CPU latency."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from llm4seg.cli.options import AttentionOpt, ImageSizeOpt, JsonOpt, LayerOpt, LlmOpt, ModelOpt, PositionsOpt
from llm4seg.cli.render import human, print_json, stdout


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
    """Build a model (offline, embedded LLM by default) and report what it costs."""
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
    table = Table(title=f"{report['model']} at {report['image_size']}x{report['image_size']}")
    table.add_column("what")
    table.add_column("value", justify="right")
    p = report["params"]
    table.add_row("parameters (total)", f"{p['total']:,}")
    table.add_row("  trainable", f"{p['trainable']:,}")
    table.add_row("  frozen (LLM layer)", f"{p['frozen']:,}")
    table.add_row("MACs per image", human(report["macs"]))
    if report["llm"]:
        llm_info = report["llm"]
        table.add_row("LLM source", str(llm_info["source"]))
        table.add_row("LLM layer", f"{llm_info['layer']} of {llm_info['num_hidden_layers']} ({llm_info['arch']}, D={llm_info['hidden_size']})")
        table.add_row("layer weights", f"{llm_info['init']}, {'trainable' if llm_info['trainable'] else 'frozen'}")
        table.add_row("attention / positions", f"{llm_info['attention']} / {llm_info['positions']}")
    if "cpu_latency_ms" in report:
        lat = report["cpu_latency_ms"]
        table.add_row(f"CPU forward, batch 1, {report['torch_threads']} threads", f"{lat['p50']:.1f} ms (p50)")
    stdout.print(table)
