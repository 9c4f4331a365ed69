"""Root of the CLI: wires one module per command and holds the single error boundary."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable

import typer

from llm4seg import __version__
from llm4seg.errors import Llm4SegError

app = typer.Typer(
    name="llm4seg",
    help="LLM4Seg segmentation: train, evaluate, export and run models in video pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def boundary(func: Callable[..., Any]) -> Callable[..., Any]:
    """Project errors become 'error: message' + hint on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Llm4SegError as exc:
            if os.environ.get("LLM4SEG_DEBUG"):
                raise
            typer.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                typer.echo(f"  hint: {exc.hint}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _register() -> None:
    from llm4seg.cli.bench_cmd import bench
    from llm4seg.cli.eval_cmd import evaluate
    from llm4seg.cli.export_cmd import export
    from llm4seg.cli.info import info
    from llm4seg.cli.models_cmd import models
    from llm4seg.cli.train import train
    from llm4seg.cli.video_cmd import video

    for name, func in (("train", train), ("eval", evaluate), ("export", export), ("bench", bench), ("video", video), ("info", info), ("models", models)):
        app.command(name)(boundary(func))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llm4seg {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")) -> None:
    """LLM4Seg: CMUNeXt + one frozen pre-trained LLM decoder layer, from training to deployment."""


_register()


def main() -> None:
    app(prog_name="llm4seg")


if __name__ == "__main__":
    sys.exit(main())
