"""Serving an export folder (or a model repository) with tritonserver, as a Python object:
`Serving` writes a temporary repository for an export folder, starts the server behind its HTTP
front, waits for the models, watches them (`Watchdog`), and leaves nothing behind when stopped
(the repository, the backend links, the server's shared memory; the log only when the server
failed). `llm4seg serve` is this plus printing and signals.

    with Serving("ART", ServeOptions(http_port=8000)) as serving:
        print(serving.server.urls)
        serving.watch(print)   # until the server process ends
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from llm4seg.errors import ConfigError
from llm4seg.runtime.core.loopback import is_loopback_host
from llm4seg.runtime.core.manifest import MANIFEST_NAME
from llm4seg.runtime.doors.triton.repository import RepositoryOptions, write_repository
from llm4seg.runtime.doors.triton.server import TritonServer
from llm4seg.runtime.doors.triton.watchdog import Watchdog


def exposure_warning(host: str) -> str | None:
    """What serving on `host` exposes, when it is not the loopback address (None when it is)."""
    if is_loopback_host(host):
        return None
    return (f"--host {host} exposes an unauthenticated Triton server (HTTP, gRPC and metrics: inference, model "
            "control, repository listing) to every machine that can reach this one; put an authenticating proxy "
            "in front, or restrict endpoints with tritonserver's --http-restricted-api/--grpc-restricted-protocol")


@dataclass
class ServeOptions:
    """How to serve (the options of `llm4seg serve`).

    Args:
        host: the address to bind (127.0.0.1: this machine only).
        http_port, grpc_port, metrics_port: the endpoints' ports.
        models: the models to load (None: every model the server has a backend for).
        repository: how an export folder's repository is written.
        ready_timeout_s: how long to wait for the models.
        max_request_mb: the most an HTTP request may send or declare for its inputs (MiB).
    """

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    models: list[str] | None = None
    repository: RepositoryOptions = field(default_factory=RepositoryOptions)
    ready_timeout_s: float = 180.0
    max_request_mb: float = 512.0

    def check(self) -> None:
        """Refuse values no server can run with (ports are checked when it starts)."""
        if not (isinstance(self.max_request_mb, (int, float)) and 0 < self.max_request_mb < 1e6):
            raise ConfigError(f"--max-request-mb {self.max_request_mb} is not in (0, 1e6) MiB",
                              hint="e.g. --max-request-mb 512")
        if not (isinstance(self.ready_timeout_s, (int, float)) and math.isfinite(self.ready_timeout_s)
                and self.ready_timeout_s > 0):
            raise ConfigError(f"--ready-timeout {self.ready_timeout_s} is not a number of seconds > 0",
                              hint="e.g. --ready-timeout 180")


class Serving:
    """An export folder or repository served by tritonserver (see the module).

    Args:
        source: an export folder (holding manifest.json: a repository is written for it, removed
            after) or a model repository.
        opts: ServeOptions.
    """

    def __init__(self, source: str | Path, opts: ServeOptions | None = None) -> None:
        self.opts = opts or ServeOptions()
        self.opts.check()
        source, self._made = Path(source), None
        self.repository = source
        if (source / MANIFEST_NAME).is_file():
            self._made = Path(tempfile.mkdtemp(prefix="llm4seg-repo-"))
            self.repository = self._made / "repository"
        try:
            if self._made is not None:
                write_repository(source, self.repository, self.opts.repository)
            o = self.opts
            self.server = TritonServer(self.repository, o.host, o.http_port, o.grpc_port, o.metrics_port,
                                       models=o.models, max_request_bytes=int(o.max_request_mb * 2**20))
        except BaseException:
            self._remove_repository()  # a refused start leaves no temporary repository behind
            raise
        self.failed = False

    def start(self) -> "Serving":
        """Start the server (its ports checked first) and wait until every model is ready."""
        self.server.start()
        self.server.wait_ready(self.opts.ready_timeout_s)
        return self

    def watch(self, say: Callable[[str], None]) -> str:
        """Keep the models alive (Watchdog) until the server process ends; returns how it ended."""
        Watchdog(self.server, say).run()
        self.failed = True  # it ended on its own: its log is kept
        return self.server.exit_reason()

    def stop(self) -> None:
        """Stop the server and remove what this object made (the log stays only after a failure)."""
        try:
            self.server.stop()
        finally:
            self.server.remove_workdir(keep_log=self.failed)
            self._remove_repository()

    def _remove_repository(self) -> None:
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)

    def __enter__(self) -> "Serving":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["ServeOptions", "Serving", "exposure_warning"]
