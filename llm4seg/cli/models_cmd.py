"""`llm4seg models`: the registered model names."""

from __future__ import annotations

from llm4seg.cli.options import JsonOpt
from llm4seg.cli.render import print_json, stdout


def models(json_out: JsonOpt = False) -> None:
    """List the model names that --model and create_model accept.

    \b
    Example:
      llm4seg models
    """
    from llm4seg.models.registry import describe_models

    described = describe_models()
    if json_out:
        print_json(described)
        return
    for name, doc in described.items():
        stdout.print(f"[bold]{name:18s}[/bold] {doc}")
