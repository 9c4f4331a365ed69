"""`llm4seg export` through the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from llm4seg.cli.main import app


def test_export_json(trained_checkpoint, tmp_path):
    """Also --triton (issue 21): the Triton repository is written beside the artifacts."""
    out = tmp_path / "art"
    result = CliRunner().invoke(app, ["export", str(trained_checkpoint), "--out", str(out), "--parity-images", "4",
                                      "--triton", str(tmp_path / "repo"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["artifact"] for r in payload["rows"]] == ["model.onnx", "model.frames.onnx", "model.frames64.onnx"]
    assert all(r["dice_agreement"] >= 0.99 for r in payload["rows"])
    assert (out / "manifest.json").is_file()
    models = payload["triton_repository"]["models"]
    assert {k: v for k, v in models.items() if k != "segment"} == {
        "model_onnx": "onnxruntime", "model_frames_onnx": "onnxruntime", "model_frames64_onnx": "onnxruntime"}
    # `segment`: the frames graph on onnxruntime's backend where the server found here has it, else the
    # python backend running model.onnx through the host contract (issue 47)
    assert models["segment"] in ("python", "onnxruntime")
    expected = "model.onnx" if models["segment"] == "python" else "model.frames.onnx"
    assert (tmp_path / "repo" / "segment" / "1" / expected).is_file()
    again = CliRunner().invoke(app, ["export", str(trained_checkpoint), "--out", str(tmp_path / "b"),
                                     "--triton", str(tmp_path / "repo")])
    assert again.exit_code == 1 and "exists and is not empty" in again.output
    assert not (tmp_path / "b").exists()  # refused before the export, not after it


def test_export_pt2_flag(trained_checkpoint, tmp_path):
    result = CliRunner().invoke(app, ["export", str(trained_checkpoint), "--out", str(tmp_path / "a"), "--pt2",
                                      "--parity-images", "2", "--no-frames"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert sorted(manifest["artifacts"]) == ["model.onnx", "model.pt2"] and "manifest:" in result.output
