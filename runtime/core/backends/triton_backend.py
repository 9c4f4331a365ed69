"""A Triton Inference Server client behind the Backend interface: `grpc://HOST:PORT/MODEL` or
`http://HOST:PORT/MODEL` (optionally `/MODEL/VERSION`).

The model's config carries its manifest entry (`llm4seg_manifest`, written by
`llm4seg.runtime.doors.triton.repository`), so a runner preprocesses exactly as the export wrote. A
"tensor" model (an artifact's own tensors) is used like a local artifact through `infer`; the
"frames" model (`segment`) takes uint8 frames (N, H, W, 3) of any size in the colour order its
config declares (`llm4seg_io`) and returns probabilities at each frame's size: `infer` gives them
as (N, 1, H, W), like a frames graph, and `runtime.core.runner.ServedRunner` feeds it.

Nothing waits forever: every call has `timeout_s`; a server that is down or dies mid-stream is
retried `retries` times (backoff 0.2, 0.4 ... s, within the timeout), then a
BackendUnavailableError names the URL and what failed. Errors the server returns for a request
(a wrong input) are raised at once, not retried.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from llm4seg.errors import BackendUnavailableError, ConfigError, InputSpecError, Llm4SegError
from llm4seg.runtime.core.backends.base import Backend
from llm4seg.runtime.core.backends.triton_shm import (GRPC_ADMIN_HEADER, KEY_FILE_ENV, ShmLane, admin_key_from_file,
                                                       is_loopback)
from llm4seg.strict_json import loads_strict

URL = re.compile(r"^(?P<scheme>grpc|https?):/+(?P<host>[^/]+)/(?P<model>[A-Za-z0-9_.-]+)(?:/(?P<version>\d+))?/?$")
NUMPY_TO_TRITON = {"float32": "FP32", "float16": "FP16", "uint8": "UINT8"}


def is_server_url(artifact: Any) -> bool:
    """True for grpc:// and http(s):// addresses (also after pathlib collapsed '//' to '/')."""
    return bool(re.match(r"^(grpc|https?):/", str(artifact)))


def parse_url(url: str) -> dict[str, str]:
    """{'scheme', 'host' (host:port), 'model', 'version'} of a server address, or a ConfigError."""
    match = URL.match(str(url))
    if not match:
        raise ConfigError(f"{url!r} is not a model address", hint="use grpc://HOST:8001/segment or http://HOST:8000/segment")
    parts = match.groupdict()
    parts["version"] = parts["version"] or ""
    return parts


def _retryable(exc: BaseException) -> bool:
    """A server that is down, restarting or unreachable (not a request it refused)."""
    status = str(getattr(exc, "status", lambda: "")() or "")
    text = str(exc).lower()
    if "protocol is restricted" in text:  # tritonserver says UNAVAILABLE for a missing or wrong key: a refusal
        return False
    return isinstance(exc, (ConnectionError, OSError, TimeoutError)) or "unavailable" in status.lower() or any(
        s in text for s in ("connection refused", "failed to connect", "unavailable", "broken pipe", "reset by peer"))


def refusal_hint(message: str, parts: dict[str, str]) -> str:
    """The fix for a server's refusal, read from its message (a wrong name, a crashed model
    process, a request our front bounded, or the wrong protocol for the port)."""
    text = message.lower()
    if "expected http/" in text or ("protocol" in text and "http2" in text) or "bad status line" in text:
        other = "http://HOST:8000" if parts["scheme"] == "grpc" else "grpc://HOST:8001"
        return (f"{parts['host']} did not answer as {parts['scheme']}: is that the other protocol's port? "
                f"(`llm4seg serve` prints both; e.g. {other}/{parts['model']})")
    if "stub process" in text or "not healthy" in text:
        return ("the model's python process on the server died: `llm4seg serve` reloads it (see its output); "
                "another tritonserver needs the model loaded again or a restart (its log says why)")
    if "protocol is restricted" in text:
        return ("the key file is not this server's (a restarted server has a new one): pass the file `llm4seg serve` "
                "printed for it, or leave shm_key_file / LLM4SEG_TRITON_KEY_FILE unset to send frames by gRPC")
    if "llm4seg serve refused" in text:
        return "send smaller frames or fewer per request, or start `llm4seg serve` with a larger --max-request-mb"
    if "unknown model" in text or "not found" in text:
        return f"check the model name {parts['model']!r} (`llm4seg serve` prints the models it loaded)"
    return "the server's message says what it refused; its log says more"


class TritonBackend(Backend):
    """A model on a Triton server, behind the Backend interface.

    Args:
        artifact: grpc://HOST:PORT/MODEL[/VERSION] or http(s)://HOST:PORT/MODEL[/VERSION].
        timeout_s: the most one call (connect, config, inference) may take.
        retries: further tries of a call the server did not answer (down, restarting).
        shm_key_file: the key file of a server on this machine (`llm4seg serve` prints it; default:
            $LLM4SEG_TRITON_KEY_FILE): `segment`'s frames and probabilities then travel through
            system shared memory, not gRPC (see `triton_shm`). Needs grpc:// to a loopback address.

    Constructing contacts the server (the manifest comes from the model's config): an address
    with no server behind it fails here, within the timeout. `infer` may be called from many
    threads; each call is one request (with dynamic batching the server batches them).
    """

    name = "triton"

    def __init__(self, artifact: str | Path, timeout_s: float = 10.0, retries: int = 2,
                 shm_key_file: str | Path | None = None) -> None:
        # inf (or NaN) reached the client as a deadline that had already passed (issue 33, item 16)
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0) \
                or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"timeout_s={timeout_s!r}, retries={retries!r}: expected a finite timeout_s > 0 and "
                              "retries >= 0", hint="e.g. timeout_s=10, retries=2 (a very long wait: timeout_s=3600)")
        self.parts = parse_url(str(artifact))
        self.url = f"{self.parts['scheme']}://{self.parts['host']}/{self.parts['model']}"  # '//' again after pathlib
        self.timeout_s, self.retries = float(timeout_s), retries
        # tritonclient.http runs on gevent, whose connections belong to the thread that made them:
        # one client per thread there; the gRPC client is thread-safe and shared.
        self._local, self._clients = threading.local(), []
        self._clients_lock = threading.Lock()
        config = self._call("read the model's config", self._config)
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        if "llm4seg_manifest" not in params:
            raise ConfigError(f"the model {self.parts['model']!r} at {self.url} has no llm4seg manifest in its config",
                              hint="serve a repository written by `llm4seg triton ART --out REPO`")
        self.params = params
        self.kind = params.get("llm4seg_kind", "tensor")
        super().__init__(Path(self.parts["model"]), manifest=loads_strict(params["llm4seg_manifest"], "llm4seg_manifest"))
        self.io = self._served_io() if self.kind == "frames" else None
        self._shm_headers = self._shm_headers_for(shm_key_file)
        self._lanes: list[ShmLane] = []

    def _shm_headers_for(self, key_file: str | Path | None) -> dict[str, str] | None:
        """The admin header for shared memory, or None where frames go through gRPC."""
        explicit = key_file is not None
        key_file = key_file if explicit else os.environ.get(KEY_FILE_ENV) or None
        if key_file is None:
            return None
        usable = self.parts["scheme"] == "grpc" and is_loopback(self.parts["host"]) and self.kind == "frames"
        if not usable:
            if explicit:  # from the environment it is a default: servers it cannot serve get gRPC
                raise ConfigError(f"shm_key_file is for a `segment` model at grpc://127.0.0.1 (this machine); "
                                  f"{self.url} is not one", hint="leave shm_key_file out for this server")
            return None
        return {GRPC_ADMIN_HEADER: admin_key_from_file(key_file)}

    @property
    def transport(self) -> str:
        """How frames reach the server: 'shared memory' or the URL's scheme."""
        return "shared memory" if self._shm_headers else self.parts["scheme"]

    def _served_io(self) -> dict[str, str]:
        """The `segment` model's tensor names and the colour order of the frames it takes."""
        io = loads_strict(self.params.get("llm4seg_io") or "null", "llm4seg_io")
        if not (isinstance(io, dict) and all(isinstance(io.get(k), str) for k in ("input", "prob", "color"))
                and io["color"] in ("RGB", "BGR")):
            raise ConfigError(f"the model {self.parts['model']!r} at {self.url} does not declare its frames' tensor "
                              f"names and colour order (llm4seg_io = {io!r})",
                              hint="serve a repository written by this llm4seg version (`llm4seg serve ART` writes one)")
        return io

    # -- the server ------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """This thread's client (HTTP), or the shared one (gRPC)."""
        holder = self if self.parts["scheme"] == "grpc" else self._local
        client = getattr(holder, "_client_obj", None)
        if client is None:
            client = self._client()
            setattr(holder, "_client_obj", client)
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _module(self) -> Any:
        """tritonclient.grpc or tritonclient.http, by the address's scheme (the one place that picks)."""
        from llm4seg._optional import require

        return require("tritonclient.grpc" if self.parts["scheme"] == "grpc" else "tritonclient.http",
                       "talking to Triton Inference Server")

    def _client(self) -> Any:
        module = self._module()
        if self.parts["scheme"] == "grpc":
            return module.InferenceServerClient(self.parts["host"])
        return module.InferenceServerClient(self.parts["host"], ssl=self.parts["scheme"] == "https",
                                            connection_timeout=self.timeout_s, network_timeout=self.timeout_s)

    def _config(self) -> dict[str, Any]:
        kwargs = {"as_json": True, "client_timeout": self.timeout_s} if self.parts["scheme"] == "grpc" else {}
        config = self.client.get_model_config(self.parts["model"], self.parts["version"], **kwargs)
        return config.get("config", config)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """fn(), retried while the server is unreachable, within timeout_s; errors name the URL."""
        deadline, attempt = time.monotonic() + self.timeout_s, 0
        while True:
            try:
                return fn()
            except Llm4SegError:
                raise  # ours already says what and how (e.g. tritonclient not installed: the pip extra)
            except Exception as exc:  # tritonclient raises its own exceptions, gevent and socket errors
                retry = _retryable(exc) and attempt < self.retries and time.monotonic() + 0.2 * 2 ** attempt < deadline
                if retry:
                    time.sleep(0.2 * 2 ** attempt)
                    attempt += 1
                    continue
                text = getattr(exc, "message", None)  # tritonclient's errors have a message() method
                message = str((text() if callable(text) else text) or exc).strip()
                if _retryable(exc) or "deadline" in message.lower() or "timed out" in message.lower():
                    raise BackendUnavailableError(
                        f"could not {what} at {self.url} after {attempt + 1} tr{'y' if attempt == 0 else 'ies'}: {message}",
                        hint="check the server is running (`llm4seg serve ART`) and the address; "
                             "a busy server may need a longer timeout") from exc
                raise InputSpecError(f"the server refused to {what} at {self.url}: {message}",
                                     hint=refusal_hint(message, self.parts)) from exc

    # -- Backend ---------------------------------------------------------------------------
    def _verify(self) -> None:
        """Nothing to hash here: the server's model checked its artifact's sha256 when it loaded."""

    def _load(self) -> None:
        kwargs = {"client_timeout": self.timeout_s} if self.parts["scheme"] == "grpc" else {}
        ready = self._call("ask whether the model is ready",
                           lambda: self.client.is_model_ready(self.parts["model"], self.parts["version"], **kwargs))
        if not ready:
            raise BackendUnavailableError(f"the model {self.parts['model']!r} at {self.url} is not ready",
                                          hint="see the server's log (it names why the model did not load)")

    def _request(self, name: str, array: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
        module = self._module()
        tensor = module.InferInput(name, list(array.shape), NUMPY_TO_TRITON[array.dtype.name])
        tensor.set_data_from_numpy(array)
        wanted = [module.InferRequestedOutput(o) for o in outputs]
        kwargs = {"client_timeout": self.timeout_s} if self.parts["scheme"] == "grpc" else {}
        result = self._call("run inference", lambda: self.client.infer(
            self.parts["model"], [tensor], model_version=self.parts["version"], outputs=wanted, **kwargs))
        return {o: result.as_numpy(o) for o in outputs}

    def _lane(self) -> ShmLane:
        """This thread's shared-memory lane (made on first use)."""
        lane = getattr(self._local, "lane", None)
        if lane is None:
            lane = self._local.lane = ShmLane(self.client, self._shm_headers, self.timeout_s)
            with self._clients_lock:
                self._lanes.append(lane)
        return lane

    def _request_shm(self, name: str, array: np.ndarray, output: str) -> np.ndarray:
        """One request whose input and float32 output (one value per frame pixel) are in this thread's lane."""
        module, lane = self._module(), self._lane()
        out_bytes = int(np.prod(array.shape[:-1])) * 4

        def infer() -> Any:
            tensor = module.InferInput(name, list(array.shape), NUMPY_TO_TRITON[array.dtype.name])
            tensor.set_shared_memory(lane.write_input(array), array.nbytes)
            wanted = module.InferRequestedOutput(output)
            wanted.set_shared_memory(lane.region("out", out_bytes), out_bytes)
            return self.client.infer(self.parts["model"], [tensor], model_version=self.parts["version"],
                                     outputs=[wanted], client_timeout=self.timeout_s)

        try:
            result = self._call("run inference", infer)
        except InputSpecError as exc:
            if "shared memory" not in str(exc):
                raise
            lane.forget_registrations()  # a restarted server has none of them: register again, once
            result = self._call("run inference", infer)
        shape = [int(d) for d in result.get_output(output).shape]
        if int(np.prod(shape)) * 4 != out_bytes:  # checked against the bytes it wrote before reading them
            raise BackendUnavailableError(f"{self.url} answered {output} of shape {shape} for frames {list(array.shape)}",
                                          hint="the server's `segment` is not one this llm4seg wrote: serve the "
                                               "export with `llm4seg serve ART`")
        return lane.read_output(np.float32, shape)

    def input_spec(self) -> dict[str, Any]:
        """A tensor model's input (its entry's); for `segment`, uint8 frames (N, H, W, 3) of any size."""
        if self.io is None:
            return super().input_spec()
        return {"name": self.io["input"], "dtype": "uint8", "shape": ["batch", "height", "width", 3],
                "batch": (1, self.entry.max_batch)}

    def _infer(self, image: np.ndarray) -> np.ndarray:
        if self.io is None:
            name, out = self.entry.input.name, self.entry.outputs[0].name
            return self._request(name, image, [out])[out]
        if self._shm_headers:
            prob = self._request_shm(self.io["input"], image, self.io["prob"])
        else:
            prob = self._request(self.io["input"], image, [self.io["prob"]])[self.io["prob"]]
        return prob if prob.ndim == 4 else prob[:, None]  # the python form's (N, H, W), a graph's (N, 1, H, W)

    def _close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
            lanes, self._lanes = self._lanes, []
        for lane in lanes:  # before the clients close: they unregister the regions
            lane.close()
        self._local, self._client_obj = threading.local(), None
        for client in clients:
            try:
                client.close()
            except Exception:  # a gevent client closed from another thread: its sockets go with it
                pass
