"""Hints that help (issue 34, items 2 and 4): a runtime-only install without tritonclient gets the
pip extra, not a TypeError; a TensorRT-RTX engine on a machine without an RTX GPU is explained as
such, not with a pip hint."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from llm4seg.errors import BackendUnavailableError
from llm4seg.runtime import Segmenter, load_backend
from llm4seg.runtime.core.manifest import add_entry, artifact_sha256


def test_a_served_model_without_tritonclient_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "tritonclient" or m.startswith("tritonclient.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tritonclient", None)  # import fails as in a runtime-only install
    with pytest.raises(BackendUnavailableError) as info:
        load_backend("grpc://127.0.0.1:1/segment", timeout_s=1.0)
    assert "llm4seg[triton]" in info.value.hint


def _rtx_plan(art):
    """A TensorRT-RTX engine entry for SM89 added to the export folder `art` (the file a stand-in:
    it is never run); skips on a machine with a CUDA GPU, where the no-GPU explanation does not apply."""
    from llm4seg.runtime.core.backends.engine_key import gpu_identity

    try:
        gpu_identity()
        pytest.skip("this machine has a CUDA GPU: the no-GPU explanation does not apply")
    except BackendUnavailableError:
        pass
    plan = art / "model.fp16.rtx-sm89.plan"
    plan.write_bytes(b"an engine TensorRT-RTX wrote")
    entry = json.loads((art / "manifest.json").read_text())["artifacts"]["model.fp16.onnx"]
    entry.update(artifact=plan.name, sha256=artifact_sha256(plan), size_bytes=plan.stat().st_size,
                 source_onnx="model.fp16.onnx",
                 engine={"product": "TensorRT-RTX", "compute_capability": "8.9", "precision": "fp16"})
    add_entry(art, plan.name, entry)
    return plan


def test_a_tensorrt_rtx_engine_without_an_rtx_gpu_says_what_it_needs(exported, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    plan = _rtx_plan(art)
    with pytest.raises(BackendUnavailableError, match=r"runs only on an NVIDIA RTX GPU of compute capability 8\.9") as info:
        Segmenter(plan).segment_one(__import__("numpy").zeros((64, 64, 3), "uint8"))
    assert "pip install" not in info.value.hint and "model.fp16.onnx" in info.value.hint
    assert "model.fp16.frames.onnx" in info.value.hint  # the export wrote it: it is named


def test_the_rtx_hint_names_no_frames_graph_an_export_did_not_write(exported, tmp_path):
    """Issue 45, item 3: the RTX-plan hint named model.frames.onnx for an export made with --no-frames."""
    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    manifest = json.loads((art / "manifest.json").read_text())
    for name in [n for n, e in manifest["artifacts"].items() if e.get("frames")]:
        del manifest["artifacts"][name]
        (art / name).unlink()
    (art / "manifest.json").write_text(json.dumps(manifest))
    plan = _rtx_plan(art)
    with pytest.raises(BackendUnavailableError) as info:
        Segmenter(plan).segment_one(__import__("numpy").zeros((64, 64, 3), "uint8"))
    assert "model.fp16.onnx" in info.value.hint and "frames" not in info.value.hint


def test_a_runtime_only_install_on_a_dicom_names_the_dicom_extra_only(tmp_path):
    """Issue 45, item 3: `pip install 'llm4seg[dicom]'` in the message, then `hint: pip install
    'llm4seg[dev]'` (hundreds of MB) below it."""
    import subprocess

    script = ("import sys\n"
              "sys.modules['pydicom'] = None\n"
              "from llm4seg.dicom import DicomSource\n"
              "from llm4seg.errors import Llm4SegError\n"
              "try:\n"
              "    DicomSource(sys.argv[1])\n"
              "except Llm4SegError as exc:\n"
              "    print(exc.message)\n"
              "    print('HINT', exc.hint)\n")
    (tmp_path / "x.dcm").write_bytes(b"\0" * 128 + b"DICM")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.dcm")], capture_output=True, text=True,
                         timeout=120).stdout
    assert "HINT pip install 'llm4seg[dicom]'" in out and "[dev]" not in out, out
    from llm4seg._optional import system_hint

    for module, extra in (("highdicom", "dicom"), ("pynetdicom", "dicom"), ("ray", "ray"), ("submitit", "slurm")):
        assert system_hint(module) == f"pip install 'llm4seg[{extra}]'"


def test_adopting_an_engine_without_a_gpu_does_not_send_the_user_to_pip(monkeypatch):
    """Issue 45, item 3: `adopt-engine` of an RTX plan on a machine without a GPU hinted the tensorrt extra."""
    from llm4seg.runtime.core.backends.engine_key import gpu_identity

    for name in [m for m in sys.modules if m == "cuda" or m.startswith("cuda.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cuda", None)
    with pytest.raises(BackendUnavailableError) as info:
        gpu_identity()
    assert "only on an NVIDIA GPU" in info.value.message and "llm4seg[tensorrt]" not in info.value.hint
