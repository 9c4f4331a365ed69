"""TensorRT: engine cache keys everywhere; the build only where tensorrt imports."""

from __future__ import annotations

import importlib.util

import pytest

from llm4seg.export.tensorrt import profile_shapes
from llm4seg.runtime.engine_key import EngineKey, mismatches

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def key(**kw):
    base = dict(onnx_sha256="ab" * 32, tensorrt_version="10.13.0", gpu_name="NVIDIA H100", compute_capability="9.0",
                precision="fp16", profile=profile_shapes((1, 1, 16), 3, 256))
    base.update(kw)
    return EngineKey(**base)


def test_key_digest_changes_with_every_field():
    digests = {key().digest()}
    for change in (dict(onnx_sha256="cd" * 32), dict(tensorrt_version="11.0.0"), dict(gpu_name="Orin"),
                   dict(compute_capability="8.7"), dict(precision="int8"), dict(profile=profile_shapes((1, 4, 32), 3, 256))):
        digests.add(key(**change).digest())
    assert len(digests) == 7


def test_mismatch_names_what_differs():
    recorded = key().to_dict()
    assert mismatches(recorded, key()) == []
    diffs = mismatches(recorded, key(gpu_name="NVIDIA H200", tensorrt_version="11.1.0"))
    assert len(diffs) == 2 and any("gpu_name" in d and "H200" in d for d in diffs)


def test_engine_without_tensorrt_says_how_to_install(trained_checkpoint, tmp_path):
    if HAS_TRT:
        pytest.skip("tensorrt is installed here; the build test below covers it")
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    result = CliRunner().invoke(app, ["export", str(trained_checkpoint), "--out", str(tmp_path), "--fp16", "--engine"])
    assert result.exit_code == 1 and "llm4seg[tensorrt]" in result.stderr


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="tensorrt is not installable on this machine (no registry serves it)")
def test_build_fp16_engine_and_reuse_cache(exported, tmp_path):
    from llm4seg.export.tensorrt import cached_engine

    out, _ = exported
    plan, meta, built = cached_engine(out / "model.fp16.onnx", tmp_path, "fp16", (1, 1, 4), 3, 64, tmp_path / "cache")
    assert plan.stat().st_size > 0 and built and meta["precision"] == "fp16"
    _, _, built_again = cached_engine(out / "model.fp16.onnx", tmp_path, "fp16", (1, 1, 4), 3, 64, tmp_path / "cache")
    assert not built_again
