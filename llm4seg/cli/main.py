"""Root of the CLI: wires one module per command and holds the single error boundary."""

from __future__ import annotations

import errno
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
    # Plain help (click's layout): flags show no <bool> metavar, and text wraps at any width
    # instead of being boxed and cut in pipes and narrow terminals.
    rich_markup_mode=None,
)


def _as_project_error(exc: BaseException) -> Llm4SegError | None:
    """Errors from outside the project that a user causes (missing extras, full disks, permissions)."""
    if isinstance(exc, Llm4SegError):
        return exc
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        from llm4seg._optional import extra_for

        top = exc.name.split(".")[0]
        return Llm4SegError(f"the package '{top}' is needed for this command but is not installed",
                            hint=f"pip install 'llm4seg[{extra_for(top)}]'")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return Llm4SegError(f"the disk is full (writing {exc.filename or 'a file'})",
                            hint="free space and run the command again; runs continue with --resume, "
                            "exports replace their folder only when complete")
    if isinstance(exc, PermissionError):
        return Llm4SegError(f"permission denied: {exc.filename or exc}",
                            hint="choose a folder you can write to (--out), or fix its permissions")
    if isinstance(exc, OSError) and exc.filename:
        return Llm4SegError(f"{exc.strerror or exc}: {exc.filename}", hint="check the path and the disk")
    return None


def boundary(func: Callable[..., Any]) -> Callable[..., Any]:
    """Project errors become 'error: message' + hint on stderr and exit code 1; Ctrl-C exits 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("interrupted (Ctrl-C)", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            error = _as_project_error(exc)
            if error is None or os.environ.get("LLM4SEG_DEBUG"):
                raise
            typer.echo(f"error: {error.message}", err=True)
            if error.hint:
                typer.echo(f"  hint: {error.hint}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _register() -> None:
    from llm4seg.cli.adopt_cmd import adopt_engine
    from llm4seg.cli.bench_cmd import bench
    from llm4seg.cli.check_cmd import check
    from llm4seg.cli.compare_cmd import compare
    from llm4seg.cli.dicom_cmd import dicom_listen
    from llm4seg.cli.eval_cmd import evaluate
    from llm4seg.cli.export_cmd import export
    from llm4seg.cli.info_cmd import info
    from llm4seg.cli.models_cmd import models
    from llm4seg.cli.serve_cmd import serve
    from llm4seg.cli.train_cmd import train
    from llm4seg.cli.triton_cmd import triton
    from llm4seg.cli.video_cmd import video

    for name, func in (("train", train), ("eval", evaluate), ("export", export), ("bench", bench), ("video", video), ("check", check),
                       ("compare", compare), ("adopt-engine", adopt_engine), ("triton", triton), ("serve", serve), ("info", info),
                       ("models", models), ("dicom-listen", dicom_listen)):
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
    """The `llm4seg` console script: runs the Typer app (errors printed once, with their hint)."""
    app(prog_name="llm4seg")


if __name__ == "__main__":
    sys.exit(main())
