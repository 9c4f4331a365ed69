"""`llm4seg serve`: run Triton Inference Server on an export folder or a model repository."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from llm4seg.cli.render import stderr, stdout
from llm4seg.cli.triton_cmd import DynamicOpt, SegmentBackendOpt, SegmentOpt, repository_options
from llm4seg.errors import ConfigError

if TYPE_CHECKING:
    from llm4seg.runtime.triton.server import TritonServer


LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_RELOADS = 3


def exposure_warning(host: str) -> str | None:
    """What serving on `host` exposes, when it is not the loopback address (None when it is)."""
    if host in LOOPBACK:
        return None
    return (f"--host {host} exposes an unauthenticated Triton server (HTTP, gRPC and metrics: inference, model "
            "control, repository listing) to every machine that can reach this one; put an authenticating proxy "
            "in front, or restrict endpoints with tritonserver's --http-restricted-api/--grpc-restricted-protocol")


class _Stop(Exception):
    """A signal asked `serve` to stop (its exit code and what asked)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code, self.why = code, why


def _terminated(signum: int, frame: object) -> None:
    raise _Stop(128 + signum, "SIGTERM")


def model_ready(server: "TritonServer", name: str) -> bool:
    """Whether tritonserver says model `name` is ready (asked on its private HTTP port)."""
    url = f"http://127.0.0.1:{server.private_http_port}/v2/models/{name}/ready"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as reply:
            return reply.status == 200
    except OSError:
        return False


def _revive(server: "TritonServer", name: str, reloads: dict[str, int]) -> None:
    """A model whose python stub died: Triton still calls it ready and answers every request
    "Stub process ... is not healthy", so say so and load it again (at most MAX_RELOADS times)."""
    reloads[name] = reloads.get(name, 0) + 1
    if reloads[name] > MAX_RELOADS:
        if reloads[name] == MAX_RELOADS + 1:
            stderr.print(f"error: model {name}'s process died again; not reloading it a {MAX_RELOADS + 1}th time: "
                         f"its calls fail until `serve` is restarted. Server log: {server.log_path}",
                         soft_wrap=True, markup=False)
        return
    stderr.print(f"error: model {name}'s python process died; reloading it ({reloads[name]} of {MAX_RELOADS})",
                 soft_wrap=True, markup=False)
    ok = server.reload(name)
    stderr.print(f"model {name} {'reloaded' if ok else 'did not reload: see ' + str(server.log_path)}",
                 soft_wrap=True, markup=False)


def watch(server: "TritonServer", every_s: float = 2.0) -> None:
    """Until the process ends: revive a model whose python stub died, and say when a model stops
    (or starts again) being ready, so a failing model is never silent in `serve`'s output."""
    stubs, down, reloads = server.stub_models(), set(), {}
    next_check = time.monotonic() + every_s
    while server.process.poll() is None:
        time.sleep(0.25)
        if time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + every_s
        for name in sorted(stubs - server.stub_models()):
            if server.process.poll() is None:
                _revive(server, name, reloads)
        for name in server.loaded:
            ready = model_ready(server, name)
            if not ready and name not in down and server.process.poll() is None:
                down.add(name)
                stderr.print(f"error: model {name} is no longer ready; calls to it fail until it loads again. "
                             f"Server log: {server.log_path}\n{server.log_tail(4)}", soft_wrap=True, markup=False)
            elif ready and name in down:
                down.discard(name)
                stderr.print(f"model {name} is ready again", soft_wrap=True, markup=False)


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
    from llm4seg.runtime.triton.repository import write_repository
    from llm4seg.runtime.triton.server import TritonServer

    repo, made = source, None
    if (source / "manifest.json").is_file():  # an export folder: a repository for this run, removed after it
        made = Path(tempfile.mkdtemp(prefix="llm4seg-repo-"))
        repo = made / "repository"
        write_repository(source, repo, repository_options(dynamic_batching, segment_artifact, instances, False,
                                                          segment_backend))
    wanted = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if not 0 < max_request_mb < 1e6:
        raise ConfigError(f"--max-request-mb {max_request_mb} is not in (0, 1e6) MiB", hint="e.g. --max-request-mb 512")
    warning = exposure_warning(host)
    if warning:
        stderr.print(f"warning: {warning}", soft_wrap=True, markup=False)
    try:
        server = TritonServer(repo, host, http_port, grpc_port, metrics_port, models=wanted,
                              max_request_bytes=int(max_request_mb * 2**20))
    except BaseException:
        if made is not None:  # a refused start leaves no temporary repository behind
            shutil.rmtree(made, ignore_errors=True)
        raise
    stdout.print(f"starting tritonserver on {repo} (log: {server.log_path})", soft_wrap=True)
    previous = signal.signal(signal.SIGTERM, _terminated)  # SIGTERM stops as Ctrl-C does: nothing is left behind
    try:
        server.start()  # checks its ports first: a busy one is refused before anything starts
        server.wait_ready(ready_timeout_s)
        urls = server.urls
        stdout.print(f"ready: {', '.join(server.loaded)}\n  HTTP    {urls['http']}\n  gRPC    {urls['grpc']}\n"
                     f"  metrics {urls['metrics']}\n  e.g. --engine {urls['grpc']}/segment   (Ctrl-C stops)", soft_wrap=True)
        for name, why in server.skipped.items():
            stdout.print(f"  not loaded: {name}: {why}", soft_wrap=True)
        watch(server)
        stderr.print(f"error: tritonserver {server.exit_reason()}", soft_wrap=True, markup=False)
        raise typer.Exit(1)
    except _Stop as stop:
        stdout.print(f"stopping tritonserver ({stop.why})")
        raise typer.Exit(stop.code)
    except KeyboardInterrupt:
        stdout.print("stopping tritonserver (Ctrl-C)")
        raise typer.Exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        server.remove_workdir()  # the backend links; the log stays where it was printed
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
