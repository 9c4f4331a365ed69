"""`llm4seg export` through the CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from llm4seg.cli.main import app


def test_export_json(trained_checkpoint, tmp_path):
    result = CliRunner().invoke(app, ["export", str(trained_checkpoint), "--out", str(tmp_path), "--parity-images", "4",
                                      "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [r["artifact"] for r in payload["rows"]] == ["model.onnx"]
    assert payload["rows"][0]["dice_agreement"] >= 0.99
    assert (tmp_path / "manifest.json").is_file()


def test_export_pt2_flag(trained_checkpoint, tmp_path):
    result = CliRunner().invoke(app, ["export", str(trained_checkpoint), "--out", str(tmp_path / "a"), "--pt2",
                                      "--parity-images", "2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert sorted(manifest["artifacts"]) == ["model.onnx", "model.pt2"] and "manifest:" in result.output
