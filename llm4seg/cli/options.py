"""Option aliases shared by every command, so each is spelled the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model name (see `llm4seg models`).")]
LlmOpt = Annotated[Optional[str], typer.Option(
    "--llm", help="LLM source: smollm2 (embedded), a .gguf file, an HF folder, a hub id, or shape:<name>.")]
LayerOpt = Annotated[Optional[int], typer.Option("--layer", help="0-based decoder layer index (default: the paper's depth).")]
AttentionOpt = Annotated[Optional[str], typer.Option("--attention", help="causal (default) or bidirectional.")]
PositionsOpt = Annotated[Optional[str], typer.Option("--positions", help="rope1d (default), rope2d, none, or paper.")]
ImageSizeOpt = Annotated[Optional[int], typer.Option("--image-size", help="Square input size in pixels (multiple of 16).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
DataOpt = Annotated[Optional[str], typer.Option(
    "--data", help="Dataset folder (images/, masks/, optional splits/); omit for the built-in synthetic set.")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="Split name in DATA/splits/ (e.g. train1, val1) or a .txt file.")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Leave out bad image/mask pairs (they are reported) instead of failing.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
CompileOpt = Annotated[Optional[str], typer.Option(
    "--compile", help="Compile .pt2 programs first: aoti (AOTInductor package) or inductor (torch.compile); "
    "cached per key, compile time reported.", show_default=False)]


def check_compile(compile_with: str | None, engines: list[Path]) -> None:
    """--compile names a compiler and some engine is a .pt2 program, or a ConfigError says so."""
    from llm4seg.errors import ConfigError
    from llm4seg.runtime.core.backends import backend_for
    from llm4seg.runtime.core.backends.torch_compile import COMPILERS

    if compile_with is None:
        return
    if compile_with not in COMPILERS:
        raise ConfigError(f"--compile {compile_with} is not a compiler", hint="use --compile aoti or --compile inductor")
    if not any(backend_for(p) == "torch" for p in engines):
        raise ConfigError(f"--compile {compile_with} applies to .pt2 programs, and no --engine is one",
                          hint="export one with `llm4seg export CKPT --out ART --pt2` and pass --engine ART/model.pt2")
