"""`dicom-listen` against hostile peers (issue 44, items 2-3 and 12), over real associations
(pynetdicom on both ends): a SOP Instance UID that is not a UID never names a file, idle
associations cannot lock senders out, `incoming/` has a quota and is emptied, an instance that
takes too long is stopped, and bad options are refused by name. The model is a stand-in: what is
tested is the listener."""

from __future__ import annotations

import time

import numpy as np
import pytest

from llm4seg.errors import ConfigError
from tests.conftest import installed_or_skip
from tests.runtime.conftest import stand_in, write_dicom


@pytest.fixture(autouse=True, scope="module")
def _pynetdicom():
    installed_or_skip(lambda: __import__("pynetdicom"), "pynetdicom", "pip install 'llm4seg[dicom]'")


def _listener(tmp_path, **options):
    from llm4seg.runtime.doors.dicom.job import DicomJob
    from llm4seg.runtime.doors.dicom.listener import ListenOptions, SegmentingListener

    return SegmentingListener(stand_in(0.9), tmp_path / "out", DicomJob(seg_frames="1"),
                              ListenOptions(port=0, **options)).start()


def _node(listener):
    from llm4seg.runtime.doors.dicom.net import DicomNode

    return DicomNode.from_text(listener.address)


def _image(tmp_path, name="image.dcm", **tags):
    import pydicom

    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[10:30, 10:40] = 200
    return write_dicom(pydicom, rgb, tmp_path / name, **tags)


@pytest.mark.parametrize("uid", ["..", "../x", "1..2", "1.2.", "01.2", "1.2/3", "../../etc"])
def test_a_sop_instance_uid_that_is_not_a_uid_never_names_a_file(tmp_path, uid):
    """A SOP Instance UID `..` passed the digits-and-dots check and results landed beside --out."""
    import pydicom

    from llm4seg.runtime.doors.dicom.net import c_store

    path = _image(tmp_path)
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.save_as(path)
    before = sorted(p.name for p in tmp_path.iterdir())
    listener = _listener(tmp_path)
    try:
        with pytest.raises(ConfigError, match="C-STORE status 0xC000"):
            c_store([path], _node(listener))
    finally:
        listener.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["out"])  # nothing beside --out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["incoming"]
    assert not any((tmp_path / "out" / "incoming").iterdir()) and listener.received == 0


def test_the_uid_grammar():
    from llm4seg.runtime.doors.dicom.listener import path_inside, valid_uid

    assert valid_uid("1.2.840.10008.5.1.4.1.1.6.1") and valid_uid("0.1") and valid_uid("1." + "2" * 62)
    assert not any(valid_uid(u) for u in ("", ".", "..", "1.", ".1", "1..2", "01", "1.02", "1.2a", None, "1" * 65))
    with pytest.raises(ConfigError, match="would leave"):
        path_inside(__import__("pathlib").Path("/tmp/x"), "../y")


def test_idle_associations_cannot_lock_senders_out(tmp_path):
    """Ten idle associations (C-ECHO, then silence) took every slot of the listener."""
    import pynetdicom

    from llm4seg.runtime.doors.dicom.net import c_store

    listener = _listener(tmp_path, max_per_peer=2, idle_timeout_s=1.0)
    node = _node(listener)
    ae = pynetdicom.AE(ae_title="IDLE")
    ae.add_requested_context("1.2.840.10008.1.1")
    try:
        idle = [ae.associate(node.host, node.port, ae_title=node.ae_title) for _ in range(2)]
        assert all(a.is_established for a in idle)
        third = ae.associate(node.host, node.port, ae_title=node.ae_title)
        assert not third.is_established  # a third from one peer at once: refused (A-ASSOCIATE-RJ, transient)
        time.sleep(2.5)  # past the idle timeout: the listener drops the silent two
        assert not any(a.is_established for a in idle)
        assert c_store([_image(tmp_path)], node)  # a real sender gets through
        assert listener.drain(30)
    finally:
        listener.stop()
    assert listener.log and "error" not in listener.log[0], listener.log
    assert any("more than 2 associations" in r for r in listener.listener.refused)


def test_incoming_has_a_quota_and_is_emptied(tmp_path):
    from llm4seg.runtime.doors.dicom.net import c_store

    listener = _listener(tmp_path)
    try:
        c_store([_image(tmp_path, "a.dcm"), _image(tmp_path, "b.dcm")], _node(listener))
        assert listener.drain(30)
    finally:
        listener.stop()
    assert listener.received == 2 and not any((tmp_path / "out" / "incoming").iterdir())
    kept = _listener(tmp_path / "kept", keep_received=True, max_incoming_mb=0.001)  # ~1 KB: one image fills it
    try:
        with pytest.raises(ConfigError, match="C-STORE status 0xA700"):
            c_store([_image(tmp_path, "c.dcm"), _image(tmp_path, "d.dcm")], _node(kept))
        assert kept.drain(30)
    finally:
        kept.stop()
    assert kept.received == 1 and any("over its quota" in r for r in kept.listener.refused)


def test_an_instance_over_its_time_budget_is_stopped_and_the_next_one_served(tmp_path):
    import pydicom

    from llm4seg.runtime.doors.dicom.net import c_store
    from tests.test_dicom_header import cine

    slow_cine = cine(tmp_path / "long.dcm", frames=40)
    listener = _listener(tmp_path, max_instance_s=0.2)
    listener.segmenter = stand_in(lambda b: (time.sleep(0.05), np.full((len(b), 1, *b.shape[2:]), 0.9, np.float32))[1])
    try:
        c_store([slow_cine, _image(tmp_path)], _node(listener))
        assert listener.drain(60)
    finally:
        listener.stop()
    first, second = listener.log
    assert "took longer than 0.2 s" in first["error"] and "error" not in second
    assert not (tmp_path / "out" / str(pydicom.dcmread(slow_cine).SOPInstanceUID)).exists()


@pytest.mark.parametrize("args, words", [
    (["--port", "70000"], "--port 70000 is not in 0-65535"),
    (["--ae-title", "A" * 40], "is not 1-16 printable ASCII"),
    (["--ae-title", "BAD\\\\TITLE"], "is not 1-16 printable ASCII"),
])
def test_bad_listener_options_are_refused_by_name(exported, tmp_path, args, words):
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    result = CliRunner().invoke(app, ["dicom-listen", "--engine", str(exported[0] / "model.onnx"), "--out",
                                      str(tmp_path / "r"), *args])
    assert result.exit_code == 1 and words in result.output, result.output


def test_port_zero_says_the_port_it_got(exported, tmp_path):
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    result = CliRunner().invoke(app, ["dicom-listen", "--engine", str(exported[0] / "model.onnx"), "--port", "0",
                                      "--out", str(tmp_path / "r"), "--max-instances", "0"])
    assert result.exit_code == 0, result.output
    port = int(result.output.split("listening as LLM4SEG@127.0.0.1:")[1].split(";")[0])
    assert 0 < port < 65536
