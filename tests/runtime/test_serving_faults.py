"""Faults found on the serving and video surfaces (issue 33, items 2, 8, 14 and 18): manifest
artifact names that reach outside the export folder, two artifacts with one Triton model name, a
video written over its own source, --batch 0, one-row frames."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from llm4seg.errors import ConfigError
from llm4seg.runtime import Segmenter
from tests.conftest import write_sealed


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "sub/model.onnx", "..", "a\\b.onnx"])
def test_an_artifact_name_that_is_a_path_is_refused_where_the_manifest_is_read(exported, tmp_path, name):
    from llm4seg.runtime.core.manifest import read_manifest
    from llm4seg.runtime.doors.triton.repository import write_repository

    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    manifest = json.loads((art / "manifest.json").read_text())
    entry = manifest["artifacts"].pop("model.onnx")
    manifest["artifacts"][name] = dict(entry, artifact=name)
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="plain file name"):
        read_manifest(art)
    with pytest.raises(ConfigError, match="plain file name"):
        write_repository(art, tmp_path / "repo")
    assert not (tmp_path / "repo").exists() and not (tmp_path / "outside.onnx").exists()


def test_a_manifest_key_that_differs_from_its_entry_is_refused(exported, tmp_path):
    from llm4seg.runtime.core.manifest import read_manifest

    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["artifacts"]["model.onnx"]["artifact"] = "model.fp16.onnx"
    write_sealed(art, manifest)
    with pytest.raises(ConfigError, match="lists 'model.onnx' for the artifact 'model.fp16.onnx'"):
        read_manifest(art)


def test_two_artifacts_with_one_triton_model_name_are_refused_before_writing(exported, tmp_path):
    from llm4seg.runtime.core.manifest import artifact_sha256
    from llm4seg.runtime.doors.triton.repository import write_repository

    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    shutil.copy(art / "model.fp16.onnx", art / "model_fp16.onnx")
    manifest = json.loads((art / "manifest.json").read_text())
    twin = dict(manifest["artifacts"]["model.fp16.onnx"], artifact="model_fp16.onnx",
                sha256=artifact_sha256(art / "model_fp16.onnx"))
    manifest["artifacts"]["model_fp16.onnx"] = twin
    write_sealed(art, manifest)
    with pytest.raises(ConfigError, match="would both be the Triton model 'model_fp16_onnx'"):
        write_repository(art, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()  # nothing half-written


def test_a_video_is_never_written_over_its_own_source(tmp_path):
    from llm4seg.runtime.doors.video.sinks import refuse_output_over_input

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"a recording")
    os.symlink(clip, tmp_path / "link.mp4")
    for out in (clip, tmp_path / "link.mp4", tmp_path / "sub" / ".." / "clip.mp4"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(ConfigError, match="is the video being read"):
            refuse_output_over_input(str(clip), out)
    refuse_output_over_input(str(clip), tmp_path / "segmented.mp4")  # another file: fine
    assert clip.read_bytes() == b"a recording"


def test_batch_zero_is_refused_and_one_row_frames_are_frames(exported):
    from llm4seg.runtime import VideoPipeline

    seg = Segmenter(exported[0] / "model.onnx")
    with pytest.raises(ConfigError, match="batch 0 must be an integer of at least 1"):
        VideoPipeline(seg, "clip.mp4", sink=lambda f: None, batch=0)
    mask = seg.segment_one(np.zeros((1, 40, 3), np.uint8))  # one row of a BGR frame, not channel-first
    assert mask.shape == (1, 40)


def test_serve_warns_when_it_leaves_the_loopback_address():
    """Issue 33, item 4: --host 0.0.0.0 exposed an unauthenticated server without a word."""
    from llm4seg.runtime.doors.triton.serving import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    text = exposure_warning("0.0.0.0")
    assert "unauthenticated" in text and "--http-restricted-api" in text


def test_a_server_on_busy_or_bad_ports_is_refused_before_it_starts(exported, tmp_path):
    """Issue 33, items 11 and 16: a second serve on busy ports said ready with the other server's
    models; equal or out-of-range ports were accepted."""
    import socket

    from tests.runtime.conftest import needs_triton

    needs_triton()
    from llm4seg.runtime.doors.triton.repository import write_repository
    from llm4seg.runtime.doors.triton.server import TritonServer, free_port

    repo = write_repository(exported[0], tmp_path / "repo")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        server = TritonServer(repo.folder, http_port=busy, grpc_port=free_port(), metrics_port=free_port())
        with pytest.raises(ConfigError, match=f"http port {busy} on 127.0.0.1 is not free"):
            server.start()
        assert server.process is None  # nothing was started
    for ports, fragment in (((8000, 8000, 8002), "must differ"), ((0, 8001, 8002), "not in 1-65535"),
                            ((70000, 8001, 8002), "not in 1-65535")):
        with pytest.raises(ConfigError, match=fragment):
            TritonServer(repo.folder, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2]).start()
    for host, fragment in (("no such host.", "is not an address"), ("10.254.254.254", "not an address of this machine")):
        server = TritonServer(repo.folder, host=host, http_port=free_port(), grpc_port=free_port(),
                              metrics_port=free_port())
        with pytest.raises(ConfigError, match=fragment):
            server.start()
        assert server.process is None and not server.workdir.exists()


def test_a_repository_shares_no_file_with_its_export(exported, tmp_path):
    """Issue 33, item 10: editing REPO/segment/1/manifest.json changed ART/manifest.json (hard links)."""
    from llm4seg.runtime.doors.triton.repository import write_repository

    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    before = (art / "manifest.json").read_text()
    write_repository(art, tmp_path / "repo")
    copy = tmp_path / "repo" / "segment" / "1" / "manifest.json"
    assert os.stat(copy).st_nlink == 1 and copy.read_text() == before
    copy.write_text("{}")
    assert (art / "manifest.json").read_text() == before


def test_a_nan_checkpoint_is_an_error_in_export_and_eval_and_manifests_are_strict_json(trained_checkpoint, tmp_path):
    """Issue 33, item 5: NaN weights exported with dice_agreement 1.0 and a bare NaN in
    manifest.json; eval scored Dice 0 without a word."""
    import torch

    import llm4seg
    from llm4seg.data.datasets import load_dataset
    from llm4seg.errors import CheckpointError, ExportError
    from llm4seg.evaluate import evaluate_model
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint
    from llm4seg.fileio import write_json_atomic
    from llm4seg.runtime.core.manifest import write_manifest

    model = llm4seg.load_checkpoint(trained_checkpoint)
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))
    bad = llm4seg.save_checkpoint(model, tmp_path / "nan")
    with pytest.raises(ExportError, match="non-finite"):
        export_checkpoint(bad, ExportOptions(out=tmp_path / "art", parity_images=2, frames=False), log=lambda s: None)
    assert not (tmp_path / "art").exists()
    with pytest.raises(CheckpointError, match="non-finite probabilities"):
        evaluate_model(model, load_dataset(None, None, 64, synthetic_count=4), torch.device("cpu"))
    with pytest.raises(ConfigError, match="NaN or infinite"):
        write_manifest(tmp_path, {"model.onnx": {"parity": {"max_abs_err": float("nan")}}})
    write_json_atomic(tmp_path / "other.json", {"x": float("nan")})  # other files keep the lenient writer


def test_the_runtimes_first_inference_refuses_non_finite_outputs(exported):
    from llm4seg.errors import BackendUnavailableError
    from llm4seg.runtime import load_backend

    backend = load_backend(exported[0] / "model.onnx")
    real = backend._infer
    backend._infer = lambda x: real(x) * np.nan
    x = np.zeros((1, 3, 64, 64), np.float32)
    with pytest.raises(BackendUnavailableError, match="non-finite output"):
        backend.infer(x)
    backend._infer = real
    assert np.isfinite(backend.infer(x)).all()


def test_an_infinite_timeout_and_a_models_typo_are_refused(exported, tmp_path):
    """Issue 33, item 16: timeout_s=inf gave an immediate 'Deadline Exceeded'; a typo in --models
    loaded nothing of it without a word."""
    from tests.runtime.conftest import needs_triton

    from llm4seg.runtime import load_backend

    for bad in (float("inf"), float("nan"), 0):
        with pytest.raises(ConfigError, match="finite timeout_s > 0"):
            load_backend("grpc://127.0.0.1:1/segment", timeout_s=bad)
    needs_triton()
    from llm4seg.runtime.doors.triton.repository import write_repository
    from llm4seg.runtime.doors.triton.server import TritonServer, free_port

    repo = write_repository(exported[0], tmp_path / "repo")
    server = TritonServer(repo.folder, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          models=["segmnet"])
    with pytest.raises(ConfigError, match="--models names segmnet"):
        server.start()
    assert server.process is None and not server.workdir.exists()  # a refused start leaves nothing in /tmp


def test_an_image_sequence_is_a_video_source(exported, tmp_path):
    """Issue 33, item 18: `frames/%03d.png` was reported as not existing."""
    import cv2

    from llm4seg.runtime import VideoPipeline
    from llm4seg.runtime.doors.video.sources import is_image_sequence

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((48, 64, 3), 60 * i, np.uint8))
    pattern = str(folder / "%03d.png")
    assert is_image_sequence(pattern)
    seen = []
    with Segmenter(exported[0] / "model.onnx") as seg:
        pipeline = VideoPipeline(seg, pattern, sink=lambda f: seen.append(f.mask.shape))
        pipeline.run()
    assert seen == [(48, 64)] * 3
    with pytest.raises(ConfigError, match="no image matches the sequence"):
        is_image_sequence(str(tmp_path / "none" / "%03d.png"))
