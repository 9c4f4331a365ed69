"""Start and stop a real `tritonserver` on a model repository, with its known quirks handled.

The server is the one on PATH (an NGC container's, with its onnxruntime/TensorRT backends), else
the one inside PyTriton's wheel (`pip install 'llm4seg[triton]'`: Triton 2.51 with only the python
backend). For the latter, a backend folder is made with the python backend and the stub matching
this interpreter; the stub embeds a libpython, so LD_LIBRARY_PATH starts with this interpreter's
lib folder (another build of the same version fails with "'_thread.RLock' object has no attribute
'_recursion_count'"), and LLM4SEG_SITE hands the stub this interpreter's site folders.

Models are loaded explicitly, only those whose backend the server has (the others are named in
`skipped`). Stopping sends SIGINT, waits `--exit-timeout-secs` plus a margin, then kills; the
python backend's shared-memory regions carry a prefix of this server's own, and only those are
removed, even after a crash (another server's regions are not touched).

What a client may do: HTTP reaches tritonserver through `front.HttpFront` (declared request sizes
bounded before Triton allocates); gRPC is tritonserver's own (it checks byte counts against the
declared shape first). The APIs that change the server (model-repository: loading a model whose
files the request uploads; shared-memory, trace, logging) need a header whose secret only this
object holds, on both protocols: clients get inference, health, metadata, config and statistics.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from llm4seg.errors import BackendUnavailableError, ConfigError
from llm4seg.runtime.core.backends.triton_shm import ADMIN_HEADER, new_admin_key, write_key_file
from llm4seg.runtime.doors.triton.front import DEFAULT_MAX_REQUEST_BYTES, HttpFront
from llm4seg.runtime.doors.triton.repository import repository_models

SHM_GLOB = "llm4seg_*_*_*"  # the python backend regions of any llm4seg server (each has its own prefix)
EXIT_TIMEOUT_S = 5
RESTRICTED_APIS = "model-repository,shared-memory,trace,logging"


def _kill_with_parent() -> None:
    """In the child: die when the parent does (PR_SET_PDEATHSIG), so no server outlives its owner."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))
    except OSError:
        pass


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for tests and parallel servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_tritonserver() -> tuple[Path, Path | None]:
    """(tritonserver binary, PyTriton's package folder or None for a server on PATH)."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return Path(on_path), None
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError("no tritonserver on PATH and PyTriton is not installed",
                                      hint="pip install --no-deps nvidia-pytriton (its wheel ships tritonserver; "
                                      "`make setup` installs it), or run inside NVIDIA's tritonserver container")
    package = Path(list(spec.submodule_search_locations)[0])
    binary = package / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        raise BackendUnavailableError(f"PyTriton at {package} has no tritonserver binary", hint="reinstall nvidia-pytriton")
    return binary, package


def available_backends() -> set[str]:
    """The backends the tritonserver `llm4seg serve` would start has: PyTriton's has only python; a
    server on PATH (NVIDIA's container) those in its backends folder. Empty when there is none."""
    try:
        binary, package = find_tritonserver()
    except BackendUnavailableError:
        return set()
    if package is not None:
        return {"python"}
    folder = next((f for f in (binary.resolve().parent.parent / "backends", Path("/opt/tritonserver/backends"))
                   if f.is_dir()), None)
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder else set()


def pytriton_backends(package: Path, folder: Path) -> Path:
    """A backend folder holding PyTriton's python backend with the stub of this interpreter's version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = package / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise BackendUnavailableError(f"PyTriton has no python-backend stub for Python {version}",
                                      hint="use a Python version PyTriton ships a stub for (3.8-3.13)")
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    source = package / "tritonserver" / "backends" / "python"
    for f in (source / "libtriton_python.so", source / "triton_python_backend_utils.py", stub):
        target = python / f.name
        if not target.exists():
            target.symlink_to(f)
    return folder


def _stub_environment(package: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    libdirs = [sysconfig.get_config_var("LIBDIR") or ""]
    if package is not None:
        libdirs.append(str(package.parent / "nvidia_pytriton.libs"))
    env["LD_LIBRARY_PATH"] = os.pathsep.join([d for d in libdirs if d] + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    sites = [p for p in sys.path if p and Path(p).is_dir() and ("site-packages" in p or p.endswith("dist-packages"))]
    env["LLM4SEG_SITE"] = os.pathsep.join(dict.fromkeys(sites))
    return env


class TritonServer:
    """A tritonserver process on `repository`, bound to `host` (127.0.0.1 by default), its HTTP
    endpoint behind an `HttpFront` that bounds requests to `max_request_bytes`.

    Use as a context manager, or start() / wait_ready() / stop(). `skipped` names the models the
    server has no backend for; `log_path` holds the server's log.
    """

    def __init__(self, repository: str | Path, host: str = "127.0.0.1", http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int = 8002, log_path: str | Path | None = None, models: list[str] | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self.repository = Path(repository)
        if not any(self.repository.glob("*/config.pbtxt")):
            raise ConfigError(f"{self.repository} is not a Triton model repository (no */config.pbtxt)",
                              hint="write one with `llm4seg triton ART --out REPO`, or pass the export folder to `serve`")
        self.host, self.ports = host, {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.wanted = models
        # made when the server starts (a server refused before it starts leaves no folder behind)
        self.workdir = Path(tempfile.gettempdir()) / f"llm4seg-triton-{secrets.token_hex(8)}"
        self.log_path = Path(log_path) if log_path else self.workdir / "tritonserver.log"
        self.process: subprocess.Popen | None = None
        self.skipped: dict[str, str] = {}
        self.loaded: list[str] = []
        self.max_request_bytes = max_request_bytes
        self.shm_prefix = f"llm4seg_{os.getpid()}_{secrets.token_hex(4)}_"
        self.admin_key = new_admin_key()  # never printed: the restricted APIs stay closed to clients ...
        self.key_file = self.workdir / "admin.key"  # ... but for this user's local ones (shared memory)
        self.front: HttpFront | None = None
        self.private_http_port = 0  # tritonserver's own HTTP port on 127.0.0.1, behind the front

    @property
    def urls(self) -> dict[str, str]:
        """The endpoints: http, grpc (host:port, for `load_backend` prefix with grpc://) and metrics."""
        return {"http": f"http://{self.host}:{self.ports['http']}", "grpc": f"grpc://{self.host}:{self.ports['grpc']}",
                "metrics": f"http://{self.host}:{self.ports['metrics']}/metrics"}

    def _command(self) -> tuple[list[str], dict[str, str]]:
        binary, package = find_tritonserver()
        if not self.workdir.is_dir():  # first start, or started again after remove_workdir()
            self.workdir.mkdir(mode=0o700)  # never one that already exists: it would not be ours
        backend_dir = pytriton_backends(package, self.workdir / "backends") if package else Path("/opt/tritonserver/backends")
        have = {p.name for p in backend_dir.iterdir()} if backend_dir.is_dir() else set()
        models = repository_models(self.repository)
        unknown = sorted(set(self.wanted or ()) - set(models))
        if unknown:  # a typo in --models loaded nothing of it, silently
            raise ConfigError(f"--models names {', '.join(unknown)}, which {self.repository} does not hold",
                              hint=f"its models: {', '.join(sorted(models))}")
        for name in list(models):
            if self.wanted is not None and name not in self.wanted:
                models.pop(name)
            elif models[name] not in have:
                self.skipped[name] = f"this server has no {models[name]} backend (it has: {', '.join(sorted(have)) or 'none'})"
                models.pop(name)
        if not models:
            raise ConfigError(f"no model of {self.repository} can run on {binary}",
                              hint="; ".join(f"{k}: {v}" for k, v in self.skipped.items()) or "check --models")
        self.loaded = sorted(models)
        args = [str(binary), f"--model-repository={self.repository.resolve()}", f"--backend-directory={backend_dir}",
                "--model-control-mode=explicit", *[f"--load-model={m}" for m in self.loaded],
                "--http-address=127.0.0.1", f"--grpc-address={self.host}", f"--metrics-address={self.host}",
                f"--http-port={self.private_http_port}", f"--grpc-port={self.ports['grpc']}",
                f"--metrics-port={self.ports['metrics']}", f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
                f"--http-restricted-api={RESTRICTED_APIS}:{ADMIN_HEADER}={self.admin_key}",
                f"--grpc-restricted-protocol={RESTRICTED_APIS}:{ADMIN_HEADER}={self.admin_key}",
                f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                f"--log-file={self.log_path}"]
        return args, _stub_environment(package)

    def check_ports(self) -> None:
        """Refuse ports out of range, equal ports, and ports another process holds (a second server
        there would report the other one's models as ready, then die)."""
        bad = {k: p for k, p in self.ports.items() if not isinstance(p, int) or not 1 <= p <= 65535}
        if bad:
            raise ConfigError(f"port(s) {bad} are not in 1-65535", hint="e.g. --http-port 8000 --grpc-port 8001")
        if len(set(self.ports.values())) < len(self.ports):
            raise ConfigError(f"the HTTP, gRPC and metrics ports must differ, got {self.ports}",
                              hint="e.g. --http-port 8000 --grpc-port 8001 --metrics-port 8002")
        try:
            family = socket.getaddrinfo(self.host, None, proto=socket.IPPROTO_TCP)[0][0]
        except (socket.gaierror, UnicodeError) as exc:
            raise ConfigError(f"--host {self.host!r} is not an address ({exc})",
                              hint="use 127.0.0.1 (this machine only), an address of this machine, or 0.0.0.0") from None
        for kind, port in self.ports.items():
            with socket.socket(family) as probe:
                try:
                    probe.bind((self.host, port))
                except OSError as exc:
                    if exc.errno == errno.EADDRNOTAVAIL:
                        raise ConfigError(f"--host {self.host} is not an address of this machine ({exc.strerror})",
                                          hint="use 127.0.0.1, one of this machine's addresses (`ip -brief address`), "
                                               "or 0.0.0.0") from None
                    raise ConfigError(f"{kind} port {port} on {self.host} is not free ({exc.strerror})",
                                      hint=f"another server holds it: stop it, or pass another --{kind}-port") from None

    def start(self) -> "TritonServer":
        """Start the process (returns at once; wait_ready() waits for the models). Its ports are
        checked first."""
        self.check_ports()
        self.private_http_port = free_port()
        try:
            args, env = self._command()
        except BaseException:
            self.remove_workdir(keep_log=False)  # refused before it started: nothing left in /tmp
            raise
        write_key_file(self.key_file, self.admin_key)
        self.front = HttpFront(self.host, self.ports["http"], self.private_http_port, self.loaded,
                               self.max_request_bytes).start()
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=_kill_with_parent, start_new_session=True)
        return self

    def exit_reason(self) -> str:
        """How the process ended, in words ("exited with code 1", "was killed by SIGABRT"), with the
        log's last error lines; "is running" while it runs."""
        code = None if self.process is None else self.process.poll()
        if code is None:
            return "is running"
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return f"{how}; its log ends:\n{self.log_tail()}"

    def stub_counts(self) -> dict[str, int]:
        """Live python-backend stub processes per model now (read from /proc: a stub's command line
        names its model's model.py); one per instance of each python model."""
        if self.process is None or self.process.poll() is not None:
            return {}
        counts: dict[str, int] = {}
        pids = []
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            try:
                pids += children.read_text().split()
            except OSError:
                continue  # a thread that ended since the listing
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")  # empty for a zombie
            except OSError:
                continue  # ended since the listing
            if argv[0].endswith(b"triton_python_backend_stub") and len(argv) > 1:
                name = Path(argv[1].decode(errors="replace")).parent.parent.name
                counts[name] = counts.get(name, 0) + 1
        return counts

    def reload(self, name: str, timeout_s: float = 120.0) -> bool:
        """Load model `name` again (a fresh python stub), through the model-repository API only this
        object may use; True when the server says it loaded."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.private_http_port}/v2/repository/models/{name}/load",
                                         data=b"{}", headers={ADMIN_HEADER: self.admin_key}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                return reply.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 8) -> str:
        """The server log's last error lines (else its last lines), for error messages."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        errors = [line for line in text if line.startswith("E")] or text
        return "\n".join(errors[-lines:])

    def wait_ready(self, timeout_s: float = 180.0) -> "TritonServer":
        """Block until every loaded model is ready; a server that exits or fails a model is an error
        with its log's error lines, and so is one not ready within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.private_http_port}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                reason = self.exit_reason() if self.process is not None else "was not started"
                self._cleanup()
                raise ConfigError(f"tritonserver {reason}\n(before its models were ready)",
                                  hint=f"full log: {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ConfigError(f"tritonserver was not ready within {timeout_s:.0f} s:\n{self.log_tail()}",
                          hint=f"full log: {self.log_path}; a large artifact may need a longer --ready-timeout")

    def stop(self, timeout_s: float = EXIT_TIMEOUT_S + 10.0) -> None:
        """SIGINT, then SIGKILL after `timeout_s`; removes this server's shared-memory regions."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._cleanup()

    def _cleanup(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            try:  # its python stubs share its process group: a killed server leaves none of them running
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.front is not None:
            self.front.stop()
            self.front = None
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)
        self.key_file.unlink(missing_ok=True)  # the key opens nothing once the server is gone

    def __enter__(self) -> "TritonServer":
        return self.start().wait_ready()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self.remove_workdir(keep_log=exc[0] is not None)  # a clean run leaves nothing in /tmp

    def remove_workdir(self, keep_log: bool = True) -> None:
        """Remove this server's temporary folder (its backend links); with `keep_log`, a log written
        into it stays (the path `serve` printed), else the whole folder goes."""
        shutil.rmtree(self.workdir / "backends", ignore_errors=True)
        if not keep_log or self.log_path.parent != self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
