"""Frames and probabilities through system shared memory to a local Triton server (issue 47, item 2):
the same answers as through gRPC and in-process, regions that leave nothing in /dev/shm, a key
file read strictly, refusals that name what to do, and a `segment` that computes only the outputs
a request asks for."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm4seg.errors import ConfigError, InputSpecError
from llm4seg.runtime import Segmenter, load_backend
from llm4seg.runtime.core.backends.triton_shm import (KEY_FILE_ENV, admin_key_from_file, is_loopback,
                                                       write_key_file)
from tests.runtime.test_triton import frames_for_serving


def client_regions() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("llm4seg_client_*")}


def test_shared_memory_gives_the_grpc_and_in_process_answers_and_leaves_no_region(triton_server, exported):
    frames = frames_for_serving()  # several sizes: the lane's regions grow and are reused
    frames = frames + frames[::-1]
    before = client_regions()
    url = f"{triton_server.urls['grpc']}/segment"
    with Segmenter(exported[0] / "model.onnx") as local, Segmenter(url) as grpc, \
            Segmenter(url, shm_key_file=triton_server.key_file) as shm:
        assert shm.backend.transport == "shared memory" and grpc.backend.transport == "grpc"
        for a, b, c in zip(local.segment(frames, binary=False), grpc.segment(frames, binary=False),
                           shm.segment(frames, binary=False)):
            assert a.shape == c.shape and c.dtype == np.float32
            np.testing.assert_array_equal(b, c)
            np.testing.assert_array_equal(a, c)
        assert client_regions() - before  # the lane's regions exist while the client is open
    assert client_regions() == before  # unregistered and unlinked on close


def test_threads_each_get_their_own_regions(triton_server, exported):
    frames = frames_for_serving(4)
    url = f"{triton_server.urls['grpc']}/segment"
    with Segmenter(exported[0] / "model.onnx") as local:
        expected = local.segment(frames)
    results: dict[int, list] = {}
    with Segmenter(url, shm_key_file=triton_server.key_file) as shm:
        def work(i: int) -> None:
            order = frames[i:] + frames[:i]
            results[i] = [(f, shm.segment([f])[0]) for f in order * 2]
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(shm.backend._lanes) == 4
    for pairs in results.values():
        for frame, mask in pairs:
            np.testing.assert_array_equal(mask, expected[[id(f) for f in frames].index(id(frame))])


def test_a_key_that_is_not_the_servers_is_refused_with_the_fix(triton_server, tmp_path):
    wrong = write_key_file(tmp_path / "other.key", "0" * 32)
    with Segmenter(f"{triton_server.urls['grpc']}/segment", shm_key_file=wrong) as seg:
        with pytest.raises(InputSpecError, match="restricted") as err:
            seg.segment(frames_for_serving(1))
    assert "key file is not this server's" in err.value.hint


def test_shared_memory_is_refused_where_it_cannot_work_and_the_environment_only_offers_it(triton_server, monkeypatch):
    http = f"{triton_server.urls['http']}/segment"
    with pytest.raises(ConfigError, match="shm_key_file is for a `segment` model at grpc://127.0.0.1"):
        load_backend(http, shm_key_file=triton_server.key_file)
    monkeypatch.setenv(KEY_FILE_ENV, str(triton_server.key_file))
    plain, local = load_backend(http), load_backend(f"{triton_server.urls['grpc']}/segment")
    assert plain.transport == "http"  # the environment's is a default: HTTP where shared memory cannot go
    assert local.transport == "shared memory"
    plain.close()
    local.close()


def test_the_servers_key_file_is_its_users_only(triton_server):
    mode = triton_server.key_file.stat().st_mode & 0o777
    assert mode == 0o600 and admin_key_from_file(triton_server.key_file) == triton_server.admin_key


def test_segment_computes_only_the_outputs_a_request_names(triton_server, exported):
    """A Segmenter asks for PROB alone (its own mask stage follows); MASK alone is the mask of the
    same probabilities (the stage runs in the stub only when one of its outputs is wanted)."""
    import tritonclient.grpc as grpcclient

    frame = frames_for_serving(1)[0]
    client = grpcclient.InferenceServerClient(triton_server.urls["grpc"][len("grpc://"):])
    tensor = grpcclient.InferInput("FRAME", [1, *frame.shape], "UINT8")
    tensor.set_data_from_numpy(frame[None])
    only_mask = client.infer("segment", [tensor], outputs=[grpcclient.InferRequestedOutput("MASK")])
    assert only_mask.as_numpy("PROB") is None
    with Segmenter(exported[0] / "model.onnx") as local:
        np.testing.assert_array_equal(only_mask.as_numpy("MASK")[0], local.segment([frame])[0])
    everything = client.infer("segment", [tensor])  # no outputs named: all of them
    assert {o.name for o in everything.get_response().outputs} == {"MASK", "PROB", "CONFIDENCE", "FLAGS"}


def test_loopback_addresses():
    assert all(map(is_loopback, ("127.0.0.1:8001", "localhost:8001", "[::1]:8001")))
    assert not any(map(is_loopback, ("10.0.0.2:8001", "example.org:8001", "127.0.0.2:8001", "[::2]:8001")))


def _key_file(tmp_path: Path, data: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "k.key"
    path.unlink(missing_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=80))
def test_a_key_file_holds_32_hex_digits_or_is_refused(tmp_path_factory, data):
    path = _key_file(tmp_path_factory.mktemp("k"), data)
    text = data.decode("ascii", errors="replace")
    good = len(data) in (32, 33) and all(c in "0123456789abcdef" for c in text[:32]) and text[32:] in ("", "\n")
    if good:
        assert admin_key_from_file(path) == text[:32]
    else:
        with pytest.raises(ConfigError, match=str(path)):
            admin_key_from_file(path)


def test_a_key_file_others_can_read_a_folder_or_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="readable by other users") as err:
        admin_key_from_file(_key_file(tmp_path, b"a" * 32, 0o644))
    assert "chmod 600" in err.value.hint
    with pytest.raises(ConfigError, match="not a regular file"):
        admin_key_from_file(tmp_path)
    with pytest.raises(ConfigError, match="cannot be read"):
        admin_key_from_file(tmp_path / "absent.key")


def test_regions_the_server_lost_are_registered_again(triton_server, exported):
    """A restarted server holds none of a client's registrations: the next frame registers new
    regions (once) and gets the same answer. Here the server is made to drop them with its key."""
    import tritonclient.grpc as grpcclient

    from llm4seg.runtime.core.backends.triton_shm import GRPC_ADMIN_HEADER

    frames = frames_for_serving(2)
    admin = grpcclient.InferenceServerClient(triton_server.urls["grpc"][len("grpc://"):])
    with Segmenter(f"{triton_server.urls['grpc']}/segment", shm_key_file=triton_server.key_file) as shm:
        first = shm.segment(frames)
        lane = shm.backend._lanes[0]
        names = {name for name, _, _ in lane.regions.values()}
        admin.unregister_system_shared_memory(headers={GRPC_ADMIN_HEADER: triton_server.admin_key})  # all of them
        again = shm.segment(frames)
        assert names.isdisjoint(name for name, _, _ in lane.regions.values())  # new regions, registered anew
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_segment_never_hands_on_non_finite_probabilities_when_only_prob_is_asked_for():
    """Skipping the mask stage for PROB-only requests must not skip its check of the maps."""
    from llm4seg.runtime.doors.triton.python_model import TritonPythonModel

    model = TritonPythonModel.__new__(TritonPythonModel)  # _frames_outputs needs no loaded artifact for PROB
    good = np.full((4, 5), 0.7, np.float32)
    bad = good.copy()
    bad[1, 2] = np.nan
    out = model._frames_outputs([good, good], {"PROB"})
    assert set(out) == {"PROB"} and out["PROB"].shape == (2, 4, 5)
    with pytest.raises(ConfigError, match="1 NaN or infinite"):
        model._frames_outputs([good, bad], {"PROB"})


def test_a_probability_shape_that_does_not_fit_the_frame_is_refused_before_reading(triton_server, monkeypatch):
    """The shape the server names for PROB is checked against the bytes it wrote for this frame
    before the region is read (a server answering 9999 x 9999 would read past the region)."""
    from llm4seg.errors import BackendUnavailableError

    frame = frames_for_serving(1)
    with Segmenter(f"{triton_server.urls['grpc']}/segment", shm_key_file=triton_server.key_file) as shm:
        shm.segment(frame)
        real = shm.backend.client.infer

        class WrongShape:
            def __init__(self, result):
                self.result = result

            def get_output(self, name):
                return type("Output", (), {"shape": [1, 9999, 9999]})()

        monkeypatch.setattr(shm.backend.client, "infer", lambda *a, **k: WrongShape(real(*a, **k)))
        with pytest.raises(BackendUnavailableError, match=r"PROB of shape \[1, 9999, 9999\]"):
            shm.segment(frame)
