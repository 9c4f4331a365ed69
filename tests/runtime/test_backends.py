"""One contract over every available backend, input validation, and engine refusal."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from llm4seg.errors import BackendUnavailableError, ConfigError, InputSpecError
from llm4seg.runtime import BACKENDS, load_backend
from llm4seg.runtime.backends import backend_for

AVAILABLE = {"onnxruntime": True, "torch": importlib.util.find_spec("torch") is not None,
             "tensorrt": importlib.util.find_spec("tensorrt") is not None}


def artifact_for(backend, exported, trained_checkpoint):
    out, _ = exported
    return {"onnxruntime": out / "model.onnx", "torch": trained_checkpoint, "tensorrt": out / "model.fp16.plan"}[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_contract(backend, exported, trained_checkpoint):
    if not AVAILABLE[backend]:
        pytest.skip(f"{backend} is not installed here")
    path = artifact_for(backend, exported, trained_checkpoint)
    instance = load_backend(path, backend)
    assert not instance.loaded  # construction is cheap
    spec = instance.input_spec()
    assert spec["name"] == "image" and spec["shape"][1:] == [3, 64, 64]
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with instance as b:
        prob = b.infer(x)
        assert prob.shape == (2, 1, 64, 64) and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
        assert np.array_equal(prob, b.infer(x))  # deterministic
        with pytest.raises(InputSpecError, match=r"input 'image' has shape \(2, 3, 32, 32\), expected \(N, 3, 64, 64\)"):
            b.infer(np.zeros((2, 3, 32, 32), np.float32))
        with pytest.raises(InputSpecError, match="has dtype float64, expected float32"):
            b.infer(np.zeros((1, 3, 64, 64)))
        with pytest.raises(InputSpecError, match="has batch 0"):
            b.infer(np.zeros((0, 3, 64, 64), np.float32))
    assert not instance.loaded


def test_backends_agree(exported, trained_checkpoint):
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with load_backend(exported[0] / "model.onnx") as ort_b, load_backend(trained_checkpoint) as torch_b:
        assert np.abs(ort_b.infer(x) - torch_b.infer(x)).max() < 1e-4


@pytest.mark.skipif(not AVAILABLE["torch"], reason="torch is not installed here")
def test_torch_backend_channels_last_matches(trained_checkpoint):
    # channels_last is the CUDA default; forced here so the layout change is checked on the CPU too.
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with load_backend(trained_checkpoint, "torch") as plain, \
            load_backend(trained_checkpoint, "torch", channels_last=True) as nhwc:
        assert nhwc.memory_format is not plain.memory_format
        assert np.abs(plain.infer(x) - nhwc.infer(x)).max() < 1e-5


def test_backend_selection_and_errors(tmp_path, exported):
    assert backend_for("x/model.fp16.plan") == "tensorrt" and backend_for("x/model.onnx") == "onnxruntime"
    assert backend_for(tmp_path) == "torch"
    with pytest.raises(ConfigError, match="cannot tell the backend"):
        backend_for("model.bin")
    with pytest.raises(ConfigError, match="unknown backend 'tflite'"):
        load_backend(exported[0] / "model.onnx", "tflite")
    lone = tmp_path / "model.onnx"
    lone.write_bytes((exported[0] / "model.onnx").read_bytes())
    with pytest.raises(ConfigError, match="no manifest.json beside it"):
        load_backend(lone)


@pytest.mark.skipif(AVAILABLE["tensorrt"], reason="checks the message shown where tensorrt is missing")
def test_tensorrt_backend_without_tensorrt(exported, tmp_path):
    import json

    out, _ = exported
    plan = tmp_path / "model.fp16.plan"
    plan.write_bytes(b"not an engine")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["artifacts"]["model.fp16.plan"] = dict(manifest["artifacts"]["model.fp16.onnx"], engine={})
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackendUnavailableError, match="tensorrt") as info:
        load_backend(plan).load()
    assert "llm4seg[tensorrt]" in info.value.hint
