"""The HTTP front `llm4seg serve` puts before tritonserver: declared request sizes checked first.

Triton 2.51's HTTP endpoint allocates an input's buffer from the shape a KServe v2 JSON request
declares, before it counts the values sent: a 170-byte request declaring [1, 100000, 100000, 3]
makes it allocate 30 GB and abort (measured on PyTriton's 2.51 server). Its gRPC endpoint checks
the byte count against the declared shape first ("input byte size mismatch") and is left direct.

So tritonserver's HTTP endpoint listens on a private loopback port and this front listens where
the user asked. Every request body is bounded (`max_request_bytes`, Content-Length required); an
inference request's JSON header is read and each input's declared shape is checked against the
model's config (rank, fixed dims, max_batch_size) and the byte bound, and JSON `data` must hold
exactly the declared number of values, all before Triton sees the request. Everything else is
forwarded unchanged. The rules live in `refusal`, a pure function, so they are tested alone.

The JSON header is read by the one strict reader (llm4seg/strict_json.py): Python keeps the last
copy of a repeated key and Triton's parser the first, so a body with a repeated key (at any depth),
NaN, or a number no 64-bit parser holds is refused rather than checked one way and run another.
Connections are bounded too: at most `max_connections` at once (503 beyond), a body must arrive
within `body_timeout_s` whatever its pace (408), and the bodies being read at once may hold
`max_inflight_bytes` in all (503 beyond), so trickling or parallel clients cannot hold the front.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llm4seg.strict_json import StrictJsonError, loads_strict

DTYPE_BYTES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2, "UINT32": 4,
               "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8, "BYTES": 4}  # BYTES: its 4-byte length
MAX_RANK = 16
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
DEFAULT_MAX_REQUEST_BYTES = 512 * 2**20
MAX_CONNECTIONS = 64
BODY_TIMEOUT_S = 60.0  # the whole body, however slowly it trickles in
READ_CHUNK = 1 << 20


def _count_values(data: Any) -> int:
    """How many scalar values a (nested) JSON `data` list holds, without recursion."""
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            count += 1
    return count


def _shape_refusal(name: str, shape: Any, config: dict | None) -> str | None:
    if not isinstance(shape, list) or not 0 < len(shape) <= MAX_RANK or \
            not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return f"input {name!r} declares shape {shape!r}: expected a list of 1-{MAX_RANK} non-negative integers"
    if config is None:
        return None
    spec = next((i for i in config.get("input", []) if i.get("name") == name), None)
    if spec is None:
        return None  # Triton names the unknown input itself, before allocating
    dims, top = [int(d) for d in spec.get("dims", [])], int(config.get("max_batch_size", 0))
    if top > 0:
        if not shape or not 1 <= shape[0] <= top:
            return f"input {name!r} declares a batch of {shape[0] if shape else None}: the model takes 1-{top}"
        shape = shape[1:]
    if len(shape) != len(dims) or any(d >= 0 and s != d for s, d in zip(shape, dims)):
        return f"input {name!r} declares {shape} per item: the model takes {dims} (-1: any size)"
    return None


def refusal(header: Any, configs: dict[str, dict], model: str, max_request_bytes: int, body_bytes: int) -> str | None:
    """Why a KServe v2 inference request must not reach Triton, or None when it may.

    Args:
        header: the request's JSON header (parsed).
        configs: model name -> its Triton config as JSON (`/v2/models/NAME/config`); a model not
            in it is checked for shape sanity and size only.
        model: the model the request names.
        max_request_bytes: the most bytes all inputs together may declare.
        body_bytes: the request body's length (JSON `data` cannot declare more values than it holds).
    """
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list) or not header["inputs"]:
        return "the request's JSON must be an object with a non-empty 'inputs' list"
    declared = 0
    for item in header["inputs"]:
        if not isinstance(item, dict):
            return f"every entry of 'inputs' must be an object, got {item!r:.60}"
        name, dtype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str):
            return f"every input needs a 'name' string, got {name!r:.60}"
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            return f"input {name!r} declares datatype {dtype!r}: expected one of {', '.join(DTYPE_BYTES)}"
        why = _shape_refusal(name, shape, configs.get(model))
        if why:
            return why
        values = math.prod(shape)
        declared += values * DTYPE_BYTES[dtype]
        if declared > max_request_bytes:
            return (f"the request declares {declared:,} bytes of inputs (input {name!r}: shape {shape}, {dtype}), "
                    f"above this server's {max_request_bytes:,}-byte bound")
        if "data" in item:
            if values > body_bytes:  # a JSON value takes at least one byte: cheap refusal before counting
                return f"input {name!r} declares {values:,} values in a {body_bytes:,}-byte body"
            sent = _count_values(item["data"])
            if sent != values:
                return f"input {name!r} declares shape {shape} ({values:,} values) but its 'data' holds {sent:,}"
    return None


def _infer_model(path: str) -> str | None:
    """The model an inference path names (/v2/models/NAME[/versions/V]/infer), else None."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) in (4, 6) and parts[:2] == ["v2", "models"] and parts[-1] == "infer":
        return parts[2]
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stops sending mid-body is dropped, not waited on forever
    front: "HttpFront"

    def log_message(self, *args: Any) -> None:  # noqa: D401 - silence the default stderr log
        return

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for key, value in headers or [("Content-Type", "application/json")]:
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, status: int, message: str) -> None:
        self.close_connection = True
        self._reply(status, json.dumps({"error": f"llm4seg serve refused the request: {message}"}).encode())

    def _body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(411, "chunked bodies are not accepted: send Content-Length")
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= self.front.max_request_bytes:
            self._refuse(413, f"Content-Length {self.headers.get('Content-Length')!r} is not in "
                              f"0-{self.front.max_request_bytes:,} bytes")
            return None
        if not self.front.reserve(length):
            self._refuse(503, f"the server is reading {self.front.max_inflight_bytes:,} bytes of other requests' "
                              "bodies: retry in a moment")
            return None
        try:
            return self._read(length)
        finally:
            self.front.release(length)

    def _read(self, length: int) -> bytes | None:
        """`length` bytes of body within the front's body deadline, or a refusal (None)."""
        deadline, parts, got = time.monotonic() + self.front.body_timeout_s, [], 0
        while got < length:
            if time.monotonic() > deadline:
                self._refuse(408, f"the body took longer than {self.front.body_timeout_s:g} s to arrive "
                                  f"({got:,} of {length:,} bytes)")
                return None
            chunk = self.rfile.read1(min(READ_CHUNK, length - got)) if hasattr(self.rfile, "read1") \
                else self.rfile.read(min(READ_CHUNK, length - got))
            if not chunk:
                self._refuse(400, f"the body ended after {got:,} of its {length:,} bytes")
                return None
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def _checked(self, body: bytes) -> bool:
        model = _infer_model(self.path)
        if model is None or self.command != "POST":
            return True
        try:
            size = int(self.headers.get("Inference-Header-Content-Length", len(body)))
        except ValueError:
            size = -1
        if not 0 <= size <= len(body):
            self._refuse(400, f"Inference-Header-Content-Length {self.headers.get('Inference-Header-Content-Length')!r} "
                              f"is not in 0-{len(body):,} (the body's length)")
            return False
        try:
            header = loads_strict(body[:size], "the inference header")
        except StrictJsonError as exc:
            self._refuse(400, exc.message)
            return False
        why = refusal(header, self.front.configs(), model, self.front.max_request_bytes, len(body))
        if why:
            self._refuse(400, why)
            return False
        return True

    def _forward(self) -> None:
        body = self._body() if self.command in ("POST", "PUT") else b""
        if body is None or not self._checked(body):
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
        try:
            reply = self.front.upstream(self.command, self.path, body, headers)
        except OSError as exc:
            self._refuse(502, f"tritonserver did not answer ({exc}); it may have stopped")
            return
        status, reply_headers, data = reply
        self._reply(status, data, reply_headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most `max_connections` connections at once: one more
    is answered 503 at once and closed, so idle or trickling clients cannot take every thread."""

    def __init__(self, address: Any, handler: Any, max_connections: int) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            body = json.dumps({"error": f"llm4seg serve refused the connection: {self.max_connections} are open"})
            try:
                request.sendall(f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class HttpFront:
    """A threaded HTTP front on (host, port) forwarding to tritonserver's private HTTP endpoint.

    Args:
        host, port: where clients connect.
        upstream_port: tritonserver's HTTP port on 127.0.0.1.
        models: the models the server loaded (their configs bound the requests).
        max_request_bytes: the most a request body, and the inputs it declares, may hold.
    """

    def __init__(self, host: str, port: int, upstream_port: int, models: list[str],
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_connections: int = MAX_CONNECTIONS,
                 body_timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.upstream_port, self.models, self.max_request_bytes = upstream_port, models, max_request_bytes
        self.max_inflight_bytes = 2 * max_request_bytes
        self.body_timeout_s = body_timeout_s
        self._configs: dict[str, dict] = {}
        self._local = threading.local()
        self._inflight, self._inflight_lock = 0, threading.Lock()
        handler = type("Handler", (_Handler,), {"front": self})
        self.server = _BoundedServer((host, port), handler, max_connections)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    def reserve(self, length: int) -> bool:
        """Count `length` body bytes about to be read; False when that would pass max_inflight_bytes."""
        with self._inflight_lock:
            if self._inflight + length > self.max_inflight_bytes:
                return False
            self._inflight += length
            return True

    def release(self, length: int) -> None:
        """The bytes of a body that was read (or refused) are free again."""
        with self._inflight_lock:
            self._inflight -= length

    def configs(self) -> dict[str, dict]:
        """The loaded models' configs, read from the server once they are all there."""
        if len(self._configs) < len(self.models):
            for name in self.models:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.upstream_port}/v2/models/{name}/config",
                                                timeout=5) as r:
                        self._configs[name] = json.load(r)
                except (OSError, ValueError):
                    pass  # not answering yet: its requests get the shape and size checks only
        return self._configs

    def upstream(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, list, bytes]:
        """One request to tritonserver on this thread's kept-alive connection: (status, headers, body)."""
        for attempt in range(2):  # a kept-alive connection the server closed is reopened once
            conn = getattr(self._local, "conn", None) or HTTPConnection("127.0.0.1", self.upstream_port, timeout=300)
            self._local.conn = conn
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                return response.status, response.getheaders(), response.read()
            except OSError:
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def start(self) -> "HttpFront":
        """Serve in a daemon thread (returns at once)."""
        self._thread = threading.Thread(target=self.server.serve_forever, name="llm4seg-http-front", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=10)
        self.server.server_close()
