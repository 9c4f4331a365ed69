"""`llm4seg triton`: a Triton Inference Server model repository from an export folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.options import JsonOpt
from llm4seg.cli.render import print_json, stdout

DynamicOpt = Annotated[bool, typer.Option("--dynamic-batching/--no-dynamic-batching",
                                          help="Let Triton gather concurrent requests into batches.")]
SegmentOpt = Annotated[Optional[str], typer.Option("--segment-artifact", help="Artifact the `segment` model runs "
                                                   "(python backend: default model.onnx, else model.frames.onnx; onnxruntime backend: model.frames.onnx).")]
SegmentBackendOpt = Annotated[str, typer.Option("--segment-backend", help="auto: Triton's onnxruntime backend runs the "
                                                "frames graph as `segment` where the server found here has it (NVIDIA's "
                                                "container), else the python backend (PyTriton's server); or python / "
                                                "onnxruntime.")]


def repository_options(dynamic_batching: bool, segment_artifact: str | None, instances: int, gpu: bool,
                       segment_backend: str = "auto"):
    """RepositoryOptions from the CLI's values (shared by `triton` and `serve`); `auto` asks the
    tritonserver `serve` would start which backends it has."""
    from llm4seg.errors import ConfigError
    from llm4seg.runtime.doors.triton.repository import RepositoryOptions

    if instances < 1:
        raise ConfigError(f"--instances {instances} must be at least 1", hint="e.g. --instances 2")
    if segment_backend not in ("auto", "python", "onnxruntime"):
        raise ConfigError(f"--segment-backend {segment_backend!r} is not known", hint="auto, python or onnxruntime")
    if segment_backend == "auto":
        from llm4seg.runtime.doors.triton.server import available_backends

        segment_backend = "onnxruntime" if "onnxruntime" in available_backends() else "python"
    return RepositoryOptions(segment_artifact=segment_artifact, dynamic_batching=dynamic_batching,
                             instances=instances, gpu=gpu, segment_backend=segment_backend)


def triton(
    art: Annotated[Path, typer.Argument(metavar="ART", help="Export folder (holds manifest.json).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the model repository.")],
    dynamic_batching: DynamicOpt = True,
    segment_artifact: SegmentOpt = None,
    segment_backend: SegmentBackendOpt = "auto",
    instances: Annotated[int, typer.Option("--instances", help="Instances per model.")] = 1,
    gpu: Annotated[bool, typer.Option("--gpu", help="Place every model on the GPU (KIND_GPU).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write a model repository: `segment` (frames in, masks out) and one model per artifact.

    \b
    Examples:
      llm4seg triton art --out repo && llm4seg serve repo
      docker run --gpus all -v $PWD/repo:/models nvcr.io/nvidia/tritonserver:24.10-py3 \\\\
          tritonserver --model-repository=/models      # a GPU Triton (NOT RUN here)
    """
    from llm4seg.runtime.doors.triton.repository import write_repository

    repo = write_repository(art, out, repository_options(dynamic_batching, segment_artifact, instances, gpu,
                                                         segment_backend))
    payload = {"repository": str(repo.folder), "models": repo.models, "skipped": repo.skipped}
    if json_out:
        print_json(payload)
        return
    stdout.print(f"wrote {repo.folder}: " + ", ".join(f"{n} ({b})" for n, b in repo.models.items()), soft_wrap=True)
    for artifact, why in repo.skipped.items():
        stdout.print(f"  left out {artifact}: {why}", soft_wrap=True)
    stdout.print(f"serve it: llm4seg serve {repo.folder}", soft_wrap=True)
