"""TensorRT: engine cache keys everywhere; the build only where tensorrt imports."""

from __future__ import annotations

import importlib.util

import pytest

from llm4seg.export.tensorrt import profile_shapes
from llm4seg.runtime.core.backends.engine_key import EngineKey, mismatches

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_RTX = importlib.util.find_spec("tensorrt_rtx_bindings") is not None


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


def test_a_tensorrt_rtx_key_records_its_version_as_tensorrt_rtx():
    """Issue 34, item 7: the manifest's tensorrt_version held the TensorRT-RTX version."""
    rtx = key(product="TensorRT-RTX", tensorrt_version="1.7.1.116")
    recorded = rtx.to_dict()
    assert recorded["tensorrt_rtx_version"] == "1.7.1.116" and "tensorrt_version" not in recorded
    assert mismatches(recorded, rtx) == []
    assert any("tensorrt_rtx_version" in d for d in mismatches(recorded, key(product="TensorRT-RTX",
                                                                                tensorrt_version="1.8.0")))
    assert "tensorrt_version" in key().to_dict()


def test_engine_without_tensorrt_writes_the_recipe(trained_checkpoint, tmp_path):
    if HAS_TRT:
        pytest.skip("tensorrt is installed here; the build test below covers it")
    import json

    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    out = tmp_path / "art"
    result = CliRunner().invoke(app, ["export", str(trained_checkpoint), "--out", str(out), "--fp16", "--engine",
                                      "--parity-images", "2", "--batch", "1:2:8"])
    assert result.exit_code == 0, result.output
    recipe = json.loads((out / "manifest.json").read_text())["engine_recipes"]["model.fp16.plan"]
    assert recipe["trtexec"] == ("trtexec --onnx=model.fp16.onnx --saveEngine=model.fp16.plan --stronglyTyped "
                                 "--minShapes=image:1x3x64x64 --optShapes=image:2x3x64x64 --maxShapes=image:8x3x64x64 "
                                 "--timingCacheFile=timing.cache")
    assert "--strongly-typed" in recipe["polygraphy"] and "image:[8,3,64,64]" in recipe["polygraphy"]
    assert recipe["trtexec"] in result.output and "llm4seg adopt-engine model.fp16.plan" in result.output
    assert not (out / "model.fp16.plan").exists()  # a TensorRT 10/11 engine is built on its target
    manifest = json.loads((out / "manifest.json").read_text())["artifacts"]
    rtx = [p.name for p in out.glob("*.rtx-*.plan")]
    if HAS_RTX:  # TensorRT-RTX builds for a compute capability without a GPU: its engine is kept, marked not run
        assert rtx == ["model.fp16.rtx-sm89.plan"] and "model.fp16.rtx-sm89.plan" in result.output
        entry = manifest["model.fp16.rtx-sm89.plan"]
        assert entry["engine"]["product"] == "TensorRT-RTX" and entry["engine"]["compute_capability"] == "8.9"
        assert entry["gate"]["status"] == "NOT RUN" and entry["source_onnx"] == "model.fp16.onnx"
        assert entry["parity"] == {} and entry["sha256"]
    else:
        assert rtx == [] and manifest["model.fp16.onnx"]["tensorrt_rtx_build"]["ran"] is False


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TRT, reason="tensorrt is not installable on this machine (no registry serves it)")
def test_build_fp16_engine_and_reuse_cache(exported, tmp_path):
    from llm4seg.export.tensorrt import cached_engine

    out, _ = exported
    plan, meta, built = cached_engine(out / "model.fp16.onnx", tmp_path, "fp16", (1, 1, 4), 3, 64, tmp_path / "cache")
    assert plan.stat().st_size > 0 and built and meta["precision"] == "fp16"
    _, _, built_again = cached_engine(out / "model.fp16.onnx", tmp_path, "fp16", (1, 1, 4), 3, 64, tmp_path / "cache")
    assert not built_again


@pytest.fixture
def fake_trt(monkeypatch):
    """Install a strict TensorRT-API stand-in (see fake_tensorrt.py) and a fixed GPU identity."""
    from tests.export import fake_tensorrt

    import llm4seg.export.tensorrt as trt_export

    def install(**kw):
        module = fake_tensorrt.make_module(**kw)
        monkeypatch.setitem(__import__("sys").modules, "tensorrt", module)
        return module

    monkeypatch.setattr(trt_export, "gpu_identity", lambda: ("NVIDIA H100 80GB HBM3", "9.0"))
    return install


def fake_tensorrt_module():
    from tests.export import fake_tensorrt

    return fake_tensorrt


def onnx_file(tmp_path, op="Sigmoid"):
    """A tiny real graph image (N, 3, 64, 64) -> prob, as the strict stand-in parses ONNX for real."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node(op, ["image"], ["prob"], name="node0")], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 3, 64, 64])])
    path = tmp_path / "model.fp16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_build_goes_through_the_trt10_api_and_the_cache(fake_trt, tmp_path):
    from llm4seg.export.tensorrt import cached_engine

    trt = fake_trt()
    onnx_path, cache = onnx_file(tmp_path), tmp_path / "cache"
    plan, meta, built = cached_engine(onnx_path, tmp_path, "fp16", (1, 2, 8), 3, 64, cache)
    blob = plan.read_bytes()
    assert built and blob.startswith(fake_tensorrt_module().PLAN_MAGIC) and blob.endswith(onnx_path.read_bytes())
    assert plan.name == "model.fp16.plan"
    (call,) = trt.calls
    assert call["flags"] == 1 << 1  # STRONGLY_TYPED asked for
    config = call["config"]
    assert config.pool_limits == {trt.MemoryPoolType.WORKSPACE: 4 << 30}
    assert config.profiles[0].shapes == {"image": ((1, 3, 64, 64), (2, 3, 64, 64), (8, 3, 64, 64))}
    assert (cache / "timing.cache").read_bytes() == b"+timed"
    assert meta["precision"] == "fp16" and meta["tensorrt_version"] == "10.13.0" and meta["compute_capability"] == "9.0"

    _, _, built_again = cached_engine(onnx_path, tmp_path, "fp16", (1, 2, 8), 3, 64, cache)
    assert not built_again and len(trt.calls) == 1  # same key: served from the cache
    cached_engine(onnx_path, tmp_path, "fp16", (1, 4, 8), 3, 64, cache)
    assert len(trt.calls) == 2  # another profile is another engine
    assert config.timing_cache is not None and trt.calls[1]["config"].timing_cache.blob == b"+timed"  # cache reloaded


def test_trt11_without_the_strongly_typed_flag(fake_trt, tmp_path):
    from llm4seg.export.tensorrt import cached_engine

    trt = fake_trt(version="11.0.0", strongly_typed_flag=False)
    cached_engine(onnx_file(tmp_path), tmp_path, "fp16", (1, 1, 4), 3, 64, tmp_path / "cache")
    assert trt.calls[0]["flags"] == 0  # every network is strongly typed there


@pytest.mark.skipif(not HAS_RTX, reason="refusals come from TensorRT-RTX's real parser: pip install 'llm4seg[rtx]'")
def test_parse_and_build_failures_are_clear_and_leave_no_plan(fake_trt, tmp_path):
    from llm4seg.errors import ExportError
    from llm4seg.export.tensorrt import cached_engine

    fake_trt()
    with pytest.raises(ExportError, match=r"could not parse model.fp16.onnx: In node 0 with name: node0 and "
                       r"operator: Unique") as info:
        cached_engine(onnx_file(tmp_path, op="Unique"), tmp_path, "fp16", (1, 1, 4), 3, 64, tmp_path / "cache")
    assert "--opset 17" in info.value.hint
    fake_trt(build_ok=False)
    with pytest.raises(ExportError, match="failed to build an engine"):
        cached_engine(onnx_file(tmp_path), tmp_path, "fp16", (1, 1, 4), 3, 64, tmp_path / "cache")
    assert not list(tmp_path.glob("**/*.plan"))
