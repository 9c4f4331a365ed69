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
from llm4seg.runtime.manifest import add_entry, artifact_sha256


def test_a_served_model_without_tritonclient_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "tritonclient" or m.startswith("tritonclient.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tritonclient", None)  # import fails as in a runtime-only install
    with pytest.raises(BackendUnavailableError) as info:
        load_backend("grpc://127.0.0.1:1/segment", timeout_s=1.0)
    assert "llm4seg[triton]" in info.value.hint


def test_a_tensorrt_rtx_engine_without_an_rtx_gpu_says_what_it_needs(exported, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    plan = art / "model.fp16.rtx-sm89.plan"
    plan.write_bytes(b"an engine TensorRT-RTX wrote")
    entry = json.loads((art / "manifest.json").read_text())["artifacts"]["model.fp16.onnx"]
    entry.update(artifact=plan.name, sha256=artifact_sha256(plan), size_bytes=plan.stat().st_size,
                 source_onnx="model.fp16.onnx",
                 engine={"product": "TensorRT-RTX", "compute_capability": "8.9", "precision": "fp16"})
    add_entry(art, plan.name, entry)
    try:
        from llm4seg.runtime.engine_key import gpu_identity

        gpu_identity()
        pytest.skip("this machine has a CUDA GPU: the no-GPU explanation does not apply")
    except BackendUnavailableError:
        pass
    with pytest.raises(BackendUnavailableError, match=r"runs only on an NVIDIA RTX GPU of compute capability 8\.9") as info:
        Segmenter(plan).segment_one(__import__("numpy").zeros((64, 64, 3), "uint8"))
    assert "pip install" not in info.value.hint and "model.fp16.onnx" in info.value.hint
