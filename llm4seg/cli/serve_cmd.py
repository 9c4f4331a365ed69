"""`llm4seg serve`: run Triton Inference Server on an export folder or a model repository."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.render import stderr, stdout
from llm4seg.cli.triton_cmd import DynamicOpt, SegmentBackendOpt, SegmentOpt, repository_options


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_warning(host: str) -> str | None:
    """What serving on `host` exposes, when it is not the loopback address (None when it is)."""
    if host in LOOPBACK:
        return None
    return (f"--host {host} exposes an unauthenticated Triton server (HTTP, gRPC and metrics: inference, model "
            "control, repository listing) to every machine that can reach this one; put an authenticating proxy "
            "in front, or restrict endpoints with tritonserver's --http-restricted-api/--grpc-restricted-protocol")


def serve(
    source: Annotated[Path, typer.Argument(metavar="SOURCE", help="Export folder (a repository is written for it) or model repository.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind (0.0.0.0 exposes the server to the network).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option("--http-port")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port")] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port")] = 8002,
    models: Annotated[Optional[str], typer.Option("--models", help="Comma-separated models to load (default: all "
                                                  "this server can run).")] = None,
    dynamic_batching: DynamicOpt = True,
    segment_artifact: SegmentOpt = None,
    segment_backend: SegmentBackendOpt = "auto",
    instances: Annotated[int, typer.Option("--instances", help="Instances per model.")] = 1,
    ready_timeout_s: Annotated[float, typer.Option("--ready-timeout", help="Seconds to wait for the models.")] = 180.0,
) -> None:
    """Start tritonserver (the one on PATH, else PyTriton's) and serve until Ctrl-C.

    \b
    Examples:
      llm4seg serve art                   # then, in another shell:
      llm4seg video clip.mp4 --engine grpc://127.0.0.1:8001/segment --out seg.mp4
      llm4seg bench --engine grpc://127.0.0.1:8001/segment --engine art/model.onnx --streams 4
    """
    from llm4seg.runtime.triton.repository import write_repository
    from llm4seg.runtime.triton.server import TritonServer

    repo, made = source, None
    if (source / "manifest.json").is_file():  # an export folder: a repository for this run, removed after it
        made = Path(tempfile.mkdtemp(prefix="llm4seg-repo-"))
        repo = made / "repository"
        write_repository(source, repo, repository_options(dynamic_batching, segment_artifact, instances, False,
                                                          segment_backend))
    wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
    warning = exposure_warning(host)
    if warning:
        stderr.print(f"warning: {warning}", soft_wrap=True, markup=False)
    try:
        server = TritonServer(repo, host, http_port, grpc_port, metrics_port, models=wanted)
    except BaseException:
        if made is not None:  # a refused start leaves no temporary repository behind
            shutil.rmtree(made, ignore_errors=True)
        raise
    stdout.print(f"starting tritonserver on {repo} (log: {server.log_path})", soft_wrap=True)
    try:
        server.start()  # checks its ports first: a busy one is refused before anything starts
        server.wait_ready(ready_timeout_s)
        urls = server.urls
        stdout.print(f"ready: {', '.join(server.loaded)}\n  HTTP    {urls['http']}\n  gRPC    {urls['grpc']}\n"
                     f"  metrics {urls['metrics']}\n  e.g. --engine {urls['grpc']}/segment   (Ctrl-C stops)", soft_wrap=True)
        for name, why in server.skipped.items():
            stdout.print(f"  not loaded: {name}: {why}", soft_wrap=True)
        while server.process.poll() is None:
            time.sleep(0.5)
        stdout.print(f"tritonserver exited with code {server.process.returncode}:\n{server.log_tail()}", soft_wrap=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        stdout.print("stopping tritonserver")
        raise typer.Exit(130)
    finally:
        server.stop()
        server.remove_workdir()  # the backend links; the log stays where it was printed
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
