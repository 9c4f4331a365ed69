"""What `llm4seg serve` guards (issue 33, items 3, 16 and 17): declared request sizes bounded before
Triton allocates (a real `serve` fuzzed with malformed KServe v2 requests, alive and bounded in
memory after each), the APIs that change the server closed to clients, a crashed model process
reloaded and said, SIGTERM cleaning up like Ctrl-C, and one server's shared memory not another's."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from llm4seg.errors import BackendUnavailableError, InputSpecError
from llm4seg.runtime import Segmenter, load_backend
from tests.runtime.conftest import needs_triton

MiB = 2**20


# -- the rules alone ---------------------------------------------------------------------------
SEGMENT = {"name": "segment", "max_batch_size": 16,
           "input": [{"name": "FRAME", "data_type": "TYPE_UINT8", "dims": ["-1", "-1", "3"]}]}


def frame_input(shape, dtype="UINT8", data=None):
    item = {"name": "FRAME", "shape": shape, "datatype": dtype}
    if data is not None:
        item["data"] = data
    return {"inputs": [item]}


@pytest.mark.parametrize("header, words", [
    (frame_input([1, 100000, 100000, 3], data=[1, 2, 3]), "30,000,000,000 bytes"),
    (frame_input([1, 2000, 2000, 3], data=[1, 2, 3]), "12,000,000 values in a"),
    (frame_input([1, 4, 4, 3], data=[1] * 47), "holds 47"),
    (frame_input([1, -4, 4, 3]), "non-negative integers"),
    (frame_input([1, 4.5, 4, 3]), "non-negative integers"),
    (frame_input("1,4,4,3"), "non-negative integers"),
    (frame_input([1] * 17), "non-negative integers"),
    (frame_input([1, 4, 4, 3], dtype="UINT9"), "datatype 'UINT9'"),
    (frame_input([17, 4, 4, 3]), "batch of 17"),
    (frame_input([0, 4, 4, 3]), "batch of 0"),
    (frame_input([1, 4, 4, 4]), "takes [-1, -1, 3]"),
    (frame_input([4, 4, 3]), "takes [-1, -1, 3]"),
    ({"inputs": []}, "non-empty 'inputs'"),
    ([1, 2], "non-empty 'inputs'"),
    ({"inputs": ["FRAME"]}, "must be an object"),
])
def test_each_malformed_declaration_is_refused_by_the_rules(header, words):
    from llm4seg.runtime.doors.triton.front import refusal

    why = refusal(header, {"segment": SEGMENT}, "segment", 512 * MiB, body_bytes=200)
    assert why is not None and words in why, why


def test_well_formed_requests_pass_the_rules():
    from llm4seg.runtime.doors.triton.front import refusal

    assert refusal(frame_input([2, 4, 4, 3], data=[[1] * 48, [2] * 48]), {"segment": SEGMENT}, "segment",
                   512 * MiB, body_bytes=500) is None
    big = frame_input([16, 1080, 1920, 3])  # binary data: Triton checks the bytes against the shape itself
    assert refusal(big, {"segment": SEGMENT}, "segment", 512 * MiB, body_bytes=16 * 1080 * 1920 * 3) is None
    assert "above this server's" in refusal(big, {"segment": SEGMENT}, "segment", 64 * MiB, body_bytes=10)


# -- a real `llm4seg serve` ----------------------------------------------------------------------
def start_serve(source, *extra):
    from llm4seg.runtime.doors.triton.server import free_port

    ports = [free_port(), free_port(), free_port()]
    proc = subprocess.Popen([sys.executable, "-m", "llm4seg.cli.main", "serve", str(source), "--http-port", str(ports[0]),
                             "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.lines = []  # every line it prints, read by a thread so nothing waits on the pipe
    threading.Thread(target=lambda: proc.lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any("Ctrl-C stops" in line for line in proc.lines):
        assert proc.poll() is None, "".join(proc.lines)
        time.sleep(0.1)
    return proc, ports, "".join(proc.lines)


def more_output(proc, until, timeout_s=60.0):
    """What `proc` printed after this call, once it matches `until` (or after `timeout_s`)."""
    start, deadline = len(proc.lines), time.monotonic() + timeout_s
    while time.monotonic() < deadline and not re.search(until, "".join(proc.lines[start:])):
        time.sleep(0.2)
    return "".join(proc.lines[start:])


def server_pids(grpc_port):
    """tritonserver's pid and its children's (the python stubs)."""
    found = subprocess.run(["pgrep", "-f", f"grpc-port={grpc_port}"], capture_output=True, text=True).stdout.split()
    kids = subprocess.run(["pgrep", "-P", ",".join(found)], capture_output=True, text=True).stdout.split() if found else []
    return [int(p) for p in found + kids]


def resident_mib(pids):
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()
            total += int(fields[0]) // 1024
        except (OSError, IndexError):
            pass
    return total


@pytest.fixture(scope="module")
def served(exported):
    needs_triton()
    proc, ports, text = start_serve(exported[0], "--models", "segment", "--max-request-mb", "64")
    yield proc, ports, text
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)


def raw_request(port, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path)
        for key, value in (headers or {"Content-Length": str(len(body))}).items():
            conn.putheader(key, value)
        conn.endheaders()
        if body:
            conn.send(body)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def fuzz_cases():
    infer = "/v2/models/segment/infer"
    j = lambda obj: json.dumps(obj).encode()  # noqa: E731
    one = {"name": "FRAME", "datatype": "UINT8"}
    binary_header = j({"inputs": [{**one, "shape": [1, 20000, 20000, 3], "parameters": {"binary_data_size": 12}}]})
    return [
        ("shape bomb", infer, j({"inputs": [{**one, "shape": [1, 100000, 100000, 3], "data": [1, 2, 3]}]}), None),
        ("shape 20000^2", infer, j({"inputs": [{**one, "shape": [1, 20000, 20000, 3], "data": [1, 2, 3]}]}), None),
        ("negative dim", infer, j({"inputs": [{**one, "shape": [1, -1, 8, 3], "data": [1]}]}), None),
        ("huge int dim", infer, j({"inputs": [{**one, "shape": [1, 2**62, 2**62, 3], "data": [1]}]}), None),
        ("float dim", infer, j({"inputs": [{**one, "shape": [1, 8.0, 8, 3], "data": [1]}]}), None),
        ("wrong rank", infer, j({"inputs": [{**one, "shape": [8, 8, 3], "data": [0] * 192}]}), None),
        ("batch 17", infer, j({"inputs": [{**one, "shape": [17, 2, 2, 3], "data": [0] * 204}]}), None),
        ("batch 0", infer, j({"inputs": [{**one, "shape": [0, 8, 8, 3], "data": []}]}), None),
        ("FP64 frames", infer, j({"inputs": [{**one, "datatype": "FP64", "shape": [1, 8, 8, 3], "data": [0.5] * 192}]}), None),
        ("unknown dtype", infer, j({"inputs": [{**one, "datatype": "COMPLEX", "shape": [1, 8, 8, 3], "data": [0] * 192}]}), None),
        ("BYTES bomb", infer, j({"inputs": [{**one, "datatype": "BYTES", "shape": [10**9], "data": ["a"]}]}), None),
        ("too few values", infer, j({"inputs": [{**one, "shape": [1, 8, 8, 3], "data": [1] * 191}]}), None),
        ("not JSON", infer, b"{\"inputs\": [", None),
        # Issue 44, item 1: Python reads the last copy of a key, tritonserver the first: this 109-byte
        # body passed a front that checked the last `shape` and aborted tritonserver with the first.
        ("repeated key", infer, b'{"inputs":[{"name":"FRAME","datatype":"UINT8","shape":[1,100000,100000,3],'
                                b'"shape":[1,1,1,3],"data":[1,2,3]}]}', None),
        ("repeated key, deeper", infer, b'{"inputs":[{"name":"FRAME","datatype":"UINT8","shape":[1,1,1,3],'
                                        b'"data":[1,2,3],"parameters":{"a":1,"a":2}}]}', None),
        ("repeated inputs list", infer, b'{"inputs":[{"name":"FRAME","datatype":"UINT8","shape":[1,100000,100000,3],'
                                        b'"data":[1,2,3]}],"inputs":[]}', None),
        ("NaN literal", infer, b'{"inputs":[{"name":"FRAME","datatype":"FP32","shape":[1,1,1,1],"data":[NaN]}]}', None),
        ("number beyond 2^63", infer, b'{"inputs":[{"name":"FRAME","datatype":"UINT8","shape":[1,99999999999999999999,'
                                      b'1,3],"data":[1]}]}', None),
        ("binary size mismatch", infer, binary_header + b"x" * 12,
         {"Inference-Header-Content-Length": str(len(binary_header)), "Content-Length": str(len(binary_header) + 12)}),
        ("header length past body", infer, b"{}", {"Inference-Header-Content-Length": "999999", "Content-Length": "2"}),
        ("body over the bound", infer, b"", {"Content-Length": str(65 * MiB)}),
        ("negative length", infer, b"", {"Content-Length": "-5"}),
        ("chunked", infer, b"", {"Transfer-Encoding": "chunked"}),
        ("unknown model", "/v2/models/nope/infer", j({"inputs": [{**one, "shape": [1, 2, 2, 3], "data": [0] * 12}]}), None),
        ("unload without the key", "/v2/repository/models/segment/unload", b"{}", None),
        ("load a model.py without the key", "/v2/repository/models/evil/load",
         j({"parameters": {"config": "{}", "file:1/model.py": "aW1wb3J0IG9z"}}), None),
    ]


def test_malformed_kserve_requests_leave_a_real_serve_alive_and_bounded(served):
    proc, (http_port, grpc_port, _), _ = served
    pids = server_pids(grpc_port)
    baseline = resident_mib(pids)
    for name, path, body, headers in fuzz_cases():
        status, reply = raw_request(http_port, "POST", path, body, headers)
        assert 400 <= status < 500, (name, status, reply[:300])
        assert proc.poll() is None, name
        ready, _ = raw_request(http_port, "GET", "/v2/health/ready")
        assert ready == 200, name
        grown = resident_mib(server_pids(grpc_port)) - baseline
        # The shape bomb alone would cost 30 GB and 20000^2 1.1 GB (issue 33): 200 MiB is far below
        # either, and far above allocator noise between requests.
        assert grown < 200, f"{name}: the server grew by {grown} MiB"
    status, _ = raw_request(http_port, "GET", "/v2/models/segment/ready")
    assert status == 200  # the unload above was refused: the model is still there
    assert not Path("/tmp/evil").exists()
    # A well-formed request still gets its masks, through the front, both encodings.
    frames = [np.full((30, 40, 3), 90, np.uint8), np.full((30, 40, 3), 200, np.uint8)]
    for scheme, port in (("http", http_port), ("grpc", grpc_port)):
        masks = Segmenter(f"{scheme}://127.0.0.1:{port}/segment").segment(frames)
        assert [m.shape for m in masks] == [(30, 40)] * 2


def test_grpc_checks_declared_sizes_itself_and_repository_control_is_closed(served):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    proc, (_, grpc_port, _), _ = served
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
    request = service_pb2.ModelInferRequest(model_name="segment")
    tensor = request.inputs.add(name="FRAME", datatype="UINT8")
    tensor.shape.extend([1, 100000, 100000, 3])
    request.raw_input_contents.append(b"abc")
    with pytest.raises(grpc.RpcError, match="byte size mismatch"):
        stub.ModelInfer(request, timeout=30)
    with pytest.raises(grpc.RpcError, match="restricted"):
        stub.RepositoryModelUnload(service_pb2.RepositoryModelUnloadRequest(model_name="segment"), timeout=30)
    assert proc.poll() is None
    assert stub.ModelReady(service_pb2.ModelReadyRequest(name="segment"), timeout=30).ready


def test_the_wrong_protocol_for_a_port_is_named(served):
    _, (http_port, grpc_port, _), _ = served
    with pytest.raises(InputSpecError, match="other protocol's port"):
        load_backend(f"http://127.0.0.1:{grpc_port}/segment", timeout_s=3)
    with pytest.raises((BackendUnavailableError, InputSpecError)) as caught:
        load_backend(f"grpc://127.0.0.1:{http_port}/segment", timeout_s=3, retries=0)
    assert str(http_port) in str(caught.value)


def test_stopping_one_server_leaves_anothers_shared_memory(served, exported, tmp_path):
    from llm4seg.runtime.doors.triton.repository import write_repository
    from llm4seg.runtime.doors.triton.server import SHM_GLOB, TritonServer, free_port

    proc, (_, grpc_port, _), _ = served  # (before the crash test: a dead stub's region goes on its own later)
    theirs = {p.name for p in Path("/dev/shm").glob(f"llm4seg_{proc.pid}_*")}
    assert theirs  # the module's serve has its regions (prefixed with its pid)
    repo = write_repository(exported[0], tmp_path / "repo")
    with TritonServer(repo.folder, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                      models=["segment"]) as second:
        mine = {p.name for p in Path("/dev/shm").glob(f"{second.shm_prefix}*")}
        assert mine and not mine & theirs
    assert theirs <= {p.name for p in Path("/dev/shm").glob(SHM_GLOB)}  # still there after the second stopped
    assert not list(Path("/dev/shm").glob(f"{second.shm_prefix}*"))
    frames = [np.full((30, 40, 3), 60, np.uint8)]
    assert Segmenter(f"grpc://127.0.0.1:{grpc_port}/segment").segment(frames)[0].shape == (30, 40)


def test_a_crashed_model_process_is_said_and_reloaded(served):
    proc, (_, grpc_port, _), _ = served
    seg = Segmenter(f"grpc://127.0.0.1:{grpc_port}/segment", timeout_s=10)
    frames = [np.full((30, 40, 3), 120, np.uint8)]
    seg.segment(frames)
    stubs = [p for p in server_pids(grpc_port)[1:]
             if b"triton_python_backend_stub" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert stubs
    os.kill(stubs[0], signal.SIGKILL)
    said = more_output(proc, r"model segment (reloaded|did not reload)")
    assert "model segment's python process died; reloading it (1 of 3)" in said and "model segment reloaded" in said, said
    assert [m.shape for m in seg.segment(frames)] == [(30, 40)]


def test_a_server_that_dies_is_reported_as_such(served):
    proc, (_, grpc_port, _), _ = served  # the module's last use of its serve
    os.kill(server_pids(grpc_port)[0], signal.SIGABRT)
    assert proc.wait(timeout=60) == 1
    time.sleep(0.5)  # the reader thread takes the last lines
    assert "error: tritonserver was killed by SIGABRT" in "".join(proc.lines)


def test_sigterm_stops_serve_like_ctrl_c_and_leaves_no_repository(exported):
    needs_triton()
    proc, ports, text = start_serve(exported[0], "--models", "segment")
    repo = Path(re.search(r"starting tritonserver on (\S+)", text).group(1))
    assert repo.is_dir() and repo.parent.name.startswith("llm4seg-repo-")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    time.sleep(0.5)  # the reader thread takes the last lines
    rest = "".join(proc.lines)
    assert proc.returncode == 128 + signal.SIGTERM and "stopping tritonserver (SIGTERM)" in rest, rest
    assert not repo.parent.exists()
    assert not list(Path("/dev/shm").glob(f"llm4seg_{proc.pid}_*"))  # this server's regions only
    assert subprocess.run(["pgrep", "-f", f"grpc-port={ports[1]}"], capture_output=True).returncode == 1
    log = Path(re.search(r"\(log: (\S+)", text).group(1))
    assert not log.parent.exists()  # a clean stop leaves no llm4seg-triton-* folder (issue 44, item 10)


def test_one_dead_stub_of_two_instances_is_noticed_and_reloaded(exported):
    """Issue 44, item 10: with --instances 2 stubs were tracked by model name, so one dead stub of two
    went unnoticed while half the requests failed and the model reported ready."""
    needs_triton()
    proc, (_, grpc_port, _), _ = start_serve(exported[0], "--models", "segment", "--instances", "2")
    try:
        stubs = [p for p in server_pids(grpc_port)[1:]
                 if b"triton_python_backend_stub" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(stubs) == 2, stubs
        os.kill(stubs[0], signal.SIGKILL)
        said = more_output(proc, r"model segment (reloaded|did not reload)")
        assert "model segment's python process died; reloading it (1 of 3)" in said and "model segment reloaded" in said, said
        seg = Segmenter(f"grpc://127.0.0.1:{grpc_port}/segment", timeout_s=10)
        frames = [np.full((30, 40, 3), 120, np.uint8)]
        assert all(seg.segment(frames)[0].shape == (30, 40) for _ in range(6))  # every instance answers again
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
