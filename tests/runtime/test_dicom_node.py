"""DICOM nodes (issue 35), against a real Orthanc (Debian's `orthanc` + `orthanc-dicomweb`) started
on 127.0.0.1 once for this module: SEGs and the overlay sent by `llm4seg video` over C-STORE and
STOW-RS and read back from Orthanc, `llm4seg dicom-listen` segmenting what a C-STORE sends it and
forwarding the SEG, and a node that is not there refused by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from llm4seg.errors import ConfigError
from tests.conftest import installed_or_skip
from tests.runtime.conftest import assert_valid_dicom

ORTHANC_DEBS = "apt-get install orthanc orthanc-dicomweb (make setup does, as root)"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def _orthanc_present() -> None:
    if shutil.which("Orthanc") is None and not Path("/usr/sbin/Orthanc").exists():
        raise FileNotFoundError("no Orthanc executable")
    if not DICOMWEB_PLUGIN.exists():
        raise FileNotFoundError(f"no DICOMweb plugin at {DICOMWEB_PLUGIN}")
    __import__("pynetdicom"), __import__("dicomweb_client"), __import__("highdicom")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """A real Orthanc on free ports of 127.0.0.1: {'http', 'dicomweb', 'node', 'rest'}."""
    installed_or_skip(_orthanc_present, "Orthanc with DICOMweb, pynetdicom and dicomweb-client",
                      f"{ORTHANC_DEBS}; pip install 'llm4seg[dicom]'")
    import requests

    from llm4seg.runtime.doors.triton.server import free_port

    folder = tmp_path_factory.mktemp("orthanc")
    http_port, dicom_port = free_port(), free_port()
    config = {"Name": "llm4seg-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
              "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True,
              "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "w")
    binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    # TCP_NODELAY=1: DCMTK inside Orthanc answers at once, not after a delayed ACK (RESULTS.md).
    proc = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "TCP_NODELAY": "1"})
    rest = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(150):
            try:
                if requests.get(f"{rest}/system", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"Orthanc exited {proc.returncode}: {(folder / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.2)
        else:
            pytest.fail("Orthanc did not answer within 30 s")
        yield {"rest": rest, "dicomweb": f"{rest}/dicom-web", "node": f"ORTHANC@127.0.0.1:{dicom_port}"}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _in_orthanc(orthanc, sop_instance_uid):
    """Orthanc's tags of the instance with this SOP Instance UID (None when it does not hold it)."""
    import requests

    found = requests.post(f"{orthanc['rest']}/tools/lookup", data=sop_instance_uid, timeout=10).json()
    ids = [f["ID"] for f in found if f["Type"] == "Instance"]
    if not ids:
        return None
    return requests.get(f"{orthanc['rest']}/instances/{ids[0]}/simplified-tags", timeout=10).json()


def test_video_sends_its_segs_over_c_store_and_stow_rs_and_orthanc_keeps_them(orthanc, exported, tmp_path):
    import highdicom
    import pydicom
    from dicomweb_client import DICOMwebClient
    from pydicom.data import get_testdata_file
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    cine = get_testdata_file("examples_ybr_color.dcm")
    result = CliRunner().invoke(app, ["video", cine, "--engine", str(exported[0] / "model.onnx"),
                                      "--out", str(tmp_path / "loop.mp4"), "--seg-frames", "4,9", "--overlay-sc",
                                      "--send", orthanc["node"], "--stow", orthanc["dicomweb"], "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["dicom"]
    assert [(s["protocol"], s["instances"]) for s in report["sent"]] == [("C-STORE", 3), ("STOW-RS", 3)]
    source = pydicom.dcmread(cine, stop_before_pixels=True)
    for name in report["files"]:
        written = pydicom.dcmread(tmp_path / "loop-dicom" / name)
        tags = _in_orthanc(orthanc, written.SOPInstanceUID)
        assert tags is not None, f"Orthanc does not hold {name}"
        assert (tags["StudyInstanceUID"], tags["SOPClassUID"]) == (source.StudyInstanceUID, written.SOPClassUID)
        # What Orthanc serves back over WADO-RS is the file we wrote, pixels included.
        back = DICOMwebClient(url=orthanc["dicomweb"]).retrieve_instance(
            written.StudyInstanceUID, written.SeriesInstanceUID, written.SOPInstanceUID)
        assert np.array_equal(back.pixel_array, written.pixel_array)
        if name.startswith("seg_"):
            seg = highdicom.seg.Segmentation.from_dataset(back)
            assert seg.get_source_image_uids()[0][2] == source.SOPInstanceUID
            assert int(back.SourceImageSequence[0].ReferencedFrameNumber) == int(name[9:13])


def test_a_node_that_is_not_there_or_refuses_is_named(orthanc, tmp_path):
    from pydicom.data import get_testdata_file

    from llm4seg.runtime.doors.dicom.net import DicomNode, c_store, stow_rs
    from llm4seg.runtime.doors.triton.server import free_port

    path = Path(get_testdata_file("CT_small.dcm"))
    closed = DicomNode("NOBODY", "127.0.0.1", free_port())
    with pytest.raises(ConfigError, match=f"DICOM node {closed} refused or did not answer"):
        c_store([path], closed)
    wrong_title = DicomNode.from_text(orthanc["node"].replace("ORTHANC@", "WRONG@"))  # Orthanc checks the title
    with pytest.raises(ConfigError, match="refused or did not answer the association \\(rejected\\)"):
        c_store([path], wrong_title)
    with pytest.raises(ConfigError, match="refused the store"):
        stow_rs([path], orthanc["rest"] + "/not-dicom-web")
    for text in ("ORTHANC@host", "127.0.0.1:4242", "@h:1", "A@h:99999", "A_TITLE_LONGER_THAN_16@h:1"):
        with pytest.raises(ConfigError, match="AE_TITLE@HOST:PORT|AE title"):
            DicomNode.from_text(text)


def test_dicom_listen_segments_what_it_receives_and_forwards_the_seg(orthanc, exported, tmp_path):
    import highdicom
    import pydicom

    from llm4seg.runtime.doors.dicom.net import DicomNode, c_store
    from llm4seg.runtime.doors.triton.server import free_port
    from tests.runtime.conftest import write_dicom

    rgb = np.zeros((96, 128, 3), np.uint8)
    rgb[20:70, 30:100] = (200, 180, 160)
    sent = write_dicom(pydicom, rgb, tmp_path / "busi-like.dcm", rle=True)
    report_file = _text_report(pydicom, tmp_path / "report.dcm")  # no pixels: reported, the listener goes on
    port, out = free_port(), tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "llm4seg.cli.main", "dicom-listen", "--engine",
                             str(exported[0] / "model.onnx"), "--port", str(port), "--out", str(out),
                             "--forward", orthanc["node"], "--max-instances", "2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        for _ in range(200):  # until it listens
            try:
                stored = c_store([report_file, sent], DicomNode("LLM4SEG", "127.0.0.1", port))
                break
            except ConfigError:
                if proc.poll() is not None:
                    pytest.fail(f"dicom-listen exited {proc.returncode}: {proc.stderr.read()}")
                time.sleep(0.3)
        else:
            pytest.fail("dicom-listen did not accept an association within 60 s")
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["received"] == 2 and stored[1] == pydicom.dcmread(sent).SOPInstanceUID
    bad, entry = report["results"]
    assert bad["instance"] == stored[0] and "holds no pixel data" in bad["error"], bad
    assert not (out / stored[0]).exists()  # nothing written for it
    assert entry.get("files") == ["seg_frame0001.dcm", "frames.jsonl"], entry
    log = [json.loads(line) for line in (out / stored[1] / "frames.jsonl").read_text().splitlines()]
    assert len(log) == 1 and {"confidence", "flags", "area_mm2"} <= set(log[0])
    assert not any((out / "incoming").iterdir())  # received files go once their results are written
    seg_path = out / stored[1] / "seg_frame0001.dcm"
    assert_valid_dicom(seg_path)
    assert_valid_dicom(sent)  # the BUSI-like input too
    seg = highdicom.seg.segread(seg_path)
    assert seg.get_source_image_uids()[0][2] == stored[1]
    assert "ReferencedFrameNumber" not in seg.SourceImageSequence[0]  # a single-frame source: no frame number
    assert _in_orthanc(orthanc, seg.SOPInstanceUID) is not None  # forwarded over C-STORE
    assert entry["sent"] == [{"to": orthanc["node"], "protocol": "C-STORE", "instances": 1}]


def _text_report(pydicom, path):
    """A Basic Text SR with its UIDs and no pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = BasicTextSRStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, BasicTextSRStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "SR", generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_listen_says_what_listening_beyond_this_machine_means(exported, tmp_path):
    from typer.testing import CliRunner

    from llm4seg.cli.main import app
    from llm4seg.runtime.doors.triton.server import free_port

    installed_or_skip(lambda: __import__("pynetdicom"), "pynetdicom", "pip install 'llm4seg[dicom]'")
    result = CliRunner().invoke(app, ["dicom-listen", "--engine", str(exported[0] / "model.onnx"), "--host", "0.0.0.0",
                                      "--port", str(free_port()), "--out", str(tmp_path / "r"), "--max-instances", "0"])
    assert result.exit_code == 0, result.output
    assert "accepts C-STORE from any machine" in result.output and "without TLS" in result.output
    assert (tmp_path / "r" / "incoming").is_dir() and not any((tmp_path / "r" / "incoming").iterdir())


def test_stow_rs_counts_what_the_server_says_it_stored(tmp_path):
    """Issue 44, item 7: an HTTP 200 whose answer lists nothing stored was reported as stored. A
    server answering so (200, an empty ReferencedSOPSequence) is refused naming the instance."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import pydicom

    from llm4seg.runtime.doors.dicom.net import stow_rs
    from tests.runtime.conftest import write_dicom

    installed_or_skip(lambda: __import__("dicomweb_client"), "dicomweb-client", "pip install 'llm4seg[dicom]'")

    class Answers200(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"00081199": {"vr": "SQ", "Value": []}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers200)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = write_dicom(pydicom, np.zeros((8, 8, 3), np.uint8), tmp_path / "x.dcm")
    try:
        with pytest.raises(ConfigError, match="lists 1 of 1 instance"):
            stow_rs([path], f"http://127.0.0.1:{server.server_address[1]}/dicom-web")
    finally:
        server.shutdown()
