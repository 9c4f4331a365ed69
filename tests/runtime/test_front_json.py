"""The Triton front's reading of KServe v2 JSON (issue 44, item 1), property-based: every drawn body
ends in a refusal or in a request both parsers read the same, never a traceback, within a set time
and memory. The front's connection bounds (a trickling body, too many connections, too many bytes
in flight) on a real front over a plain upstream."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm4seg.runtime.doors.triton.front import DTYPE_BYTES, HttpFront, refusal
from llm4seg.strict_json import StrictJsonError, loads_strict
from tests.conftest import address_space_limit
from tests.runtime.test_serve_guards import SEGMENT

MiB = 2**20


def first_wins(text: bytes):
    """How tritonserver's parser (rapidjson FindMember) reads repeated keys: the first copy."""
    def pairs(items):
        out = {}
        for k, v in items:
            out.setdefault(k, v)
        return out
    return json.loads(text, object_pairs_hook=pairs)


def front_verdict(body: bytes) -> str | None:
    """What the front decides for an inference body: a refusal, or None (forwarded)."""
    try:
        header = loads_strict(body, "the inference header")
    except StrictJsonError as exc:
        return exc.message
    return refusal(header, {"segment": SEGMENT}, "segment", 64 * MiB, len(body))


scalar = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3),
                   st.none(), st.booleans())
shape = st.one_of(st.lists(st.integers(-3, 10**7), min_size=0, max_size=6), st.lists(scalar, max_size=4), scalar)
item = st.fixed_dictionaries({}, optional={"name": st.sampled_from(["FRAME", "x", ""]),
                                           "datatype": st.sampled_from([*DTYPE_BYTES, "UINT9", ""]),
                                           "shape": shape,
                                           "data": st.lists(st.integers(0, 255), max_size=64) | st.lists(
                                               st.lists(st.integers(0, 255), max_size=8), max_size=8),
                                           "parameters": st.dictionaries(st.text(max_size=4), scalar, max_size=3)})
request = st.fixed_dictionaries({"inputs": st.lists(item, max_size=3)}, optional={"id": scalar, "outputs": st.lists(item)})


def as_text(obj, repeat: str | None, nan: bool) -> bytes:
    """`obj` as JSON, with a key of the first input repeated (holding a huge shape) or a NaN put in."""
    text = json.dumps(obj)
    if repeat and text.startswith('{"inputs": [{'):
        text = text.replace('{"inputs": [{', '{"inputs": [{"%s": [1, 100000, 100000, 3], ' % repeat, 1)
    if nan:
        text = text.replace("[", "[NaN, ", 1)
    return text.encode()


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(obj=request, repeat=st.none() | st.sampled_from(["shape", "datatype", "name", "data"]), nan=st.booleans())
def test_drawn_kserve_bodies_are_refused_or_read_the_same_by_both_parsers(obj, repeat, nan):
    """Settings named: 300 drawn bodies (a key repeated, NaN put in, shapes of every kind), each
    decided within 1 s and 256 MB of address space. A body the front lets through must mean one
    thing: tritonserver's first-copy reading equals the front's, and what it declares is bounded."""
    body = as_text(obj, repeat, nan)
    with address_space_limit(256):
        verdict = front_verdict(body)
    if verdict is not None:
        assert isinstance(verdict, str) and verdict
        return
    assert first_wins(body) == json.loads(body) == loads_strict(body)  # no repeated key, no NaN
    for entry in first_wins(body)["inputs"]:
        declared = 1
        for d in entry["shape"]:
            declared *= d
        assert declared * DTYPE_BYTES[entry["datatype"]] <= 64 * MiB


def test_the_issues_body_is_refused_and_would_have_been_read_two_ways():
    body = (b'{"inputs":[{"name":"FRAME","datatype":"UINT8","shape":[1,100000,100000,3],"shape":[1,1,1,3],'
            b'"data":[1,2,3]}]}')
    assert len(body) == 109
    assert first_wins(body)["inputs"][0]["shape"] != json.loads(body)["inputs"][0]["shape"]  # the differential
    assert "appears twice" in front_verdict(body)


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        return

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


def _front(**kwargs):
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    front = HttpFront("127.0.0.1", 0, upstream.server_address[1], [], **kwargs).start()
    return front, front.server.server_address[1], upstream


def test_a_trickling_body_is_cut_off_at_the_deadline():
    front, port, upstream = _front(body_timeout_s=1.0)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /v2/health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        t0 = time.monotonic()
        reply = b""
        for _ in range(30):  # a byte every 0.2 s: each read succeeds, the whole never arrives
            try:
                sock.sendall(b"x")
            except OSError:
                break
            time.sleep(0.2)
            sock.setblocking(False)
            try:
                reply += sock.recv(4096)
            except BlockingIOError:
                pass
            sock.setblocking(True)
            if reply:
                break
        assert b" 408 " in reply and time.monotonic() - t0 < 4, reply
    finally:
        front.stop()
        upstream.shutdown()


def test_connections_beyond_the_bound_are_answered_503_and_the_front_still_serves():
    front, port, upstream = _front(max_connections=3)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert b" 503 " in extra.recv(4096)
        for s in idle:
            s.close()
        time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v2/health", body=b"{}")
        assert conn.getresponse().status == 200
    finally:
        front.stop()
        upstream.shutdown()


def test_bodies_in_flight_are_bounded_in_total():
    front, port, upstream = _front(max_request_bytes=1000)  # 2000 bytes in flight at most
    try:
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        slow2 = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow2.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/x", body=b"y" * 10)
        reply = conn.getresponse()
        assert reply.status == 503 and b"retry" in reply.read()
        slow.close()
        slow2.close()
    finally:
        front.stop()
        upstream.shutdown()
