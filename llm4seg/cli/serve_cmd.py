"""`llm4seg serve`: run Triton Inference Server on an export folder or a model repository (the
behaviour is llm4seg.runtime.doors.triton.serving; this is options, printing and signals)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.render import stderr, stdout
from llm4seg.cli.triton_cmd import DynamicOpt, SegmentBackendOpt, SegmentOpt, repository_options


class _Stop(Exception):
    """A signal asked `serve` to stop (its exit code and what asked)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code, self.why = code, why


def _terminated(signum: int, frame: object) -> None:
    raise _Stop(128 + signum, "SIGTERM")


def _say(message: str) -> None:
    (stderr if message.startswith("error:") else stdout).print(message, soft_wrap=True, markup=False)


def _ready_lines(serving) -> str:
    from llm4seg.runtime.core.loopback import is_loopback_host

    urls, server = serving.server.urls, serving.server
    lines = [f"ready: {', '.join(server.loaded)}", f"  HTTP    {urls['http']}", f"  gRPC    {urls['grpc']}",
             f"  metrics {urls['metrics']}"]
    if is_loopback_host(serving.opts.host):  # shared memory: clients on this machine only
        lines.append(f"  clients of this user here: LLM4SEG_TRITON_KEY_FILE={server.key_file} (frames through "
                     "shared memory)")
    lines.append(f"  e.g. --engine {urls['grpc']}/segment   (Ctrl-C stops)")
    return "\n".join(lines + [f"  not loaded: {name}: {why}" for name, why in server.skipped.items()])


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
    max_request_mb: Annotated[float, typer.Option("--max-request-mb", help="The most an HTTP request may send or "
                                                   "declare for its inputs, MiB (checked before Triton allocates).")] = 512.0,
) -> None:
    """Start tritonserver (the one on PATH, else PyTriton's) and serve until Ctrl-C.

    \b
    Examples:
      llm4seg serve art                   # then, in another shell:
      llm4seg video clip.mp4 --engine grpc://127.0.0.1:8001/segment --out seg.mp4
      llm4seg bench --engine grpc://127.0.0.1:8001/segment --engine art/model.onnx --streams 4
    """
    from llm4seg.runtime.doors.triton.serving import ServeOptions, Serving, exposure_warning

    wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
    repo_opts = repository_options(dynamic_batching, segment_artifact, instances, False, segment_backend)
    opts = ServeOptions(host, http_port, grpc_port, metrics_port, wanted, repo_opts, ready_timeout_s, max_request_mb)
    if exposure_warning(host):
        _say(f"warning: {exposure_warning(host)}")
    serving = Serving(source, opts)
    _say(f"starting tritonserver on {serving.repository} (log: {serving.server.log_path} kept only if the server "
         "fails)")
    previous = signal.signal(signal.SIGTERM, _terminated)  # SIGTERM stops as Ctrl-C does: nothing is left behind
    try:
        serving.start()
        _say(_ready_lines(serving))
        _say(f"error: tritonserver {serving.watch(_say)}")
        raise typer.Exit(1)
    except (_Stop, KeyboardInterrupt) as stop:
        _say(f"stopping tritonserver ({getattr(stop, 'why', 'Ctrl-C')})")
        raise typer.Exit(getattr(stop, "code", 130)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        serving.stop()
