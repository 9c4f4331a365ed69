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
        for line in model_lines(name, doc, stdout.width if stdout.is_terminal else None):
            stdout.print(line, markup=False, highlight=False)


def model_lines(name: str, doc: str, width: int | None, name_width: int = 18) -> list[str]:
    """'name  description' with the description wrapped under itself (hanging indent) to `width`;
    one line per model where there is no terminal width (pipes, logs)."""
    import textwrap

    indent = " " * (name_width + 1)
    if width is None:
        return [f"{name:{name_width}s} {doc}"]
    return textwrap.wrap(doc, width=max(width, name_width + 21), initial_indent=f"{name:{name_width}s} ",
                         subsequent_indent=indent, break_on_hyphens=False)
