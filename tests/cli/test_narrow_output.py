"""At 80 columns (a narrow terminal or a pipe) no name or number is cut (issue 13, item 8)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llm4seg.cli import render
from llm4seg.cli.main import app


@pytest.fixture()
def narrow():
    saved = render.stdout.width, render.stderr.width
    render.stdout.width = render.stderr.width = 80
    yield
    render.stdout.width, render.stderr.width = saved


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output, result.output
    return result.output


def test_train_eval_export_bench_at_80_columns(narrow, tmp_path, exported):
    run_dir = tmp_path / "run"
    out = run("train", "--model", "cmunext_s", "--image-size", 32, "--epochs", 2, "--batch-size", 4,
              "--synthetic-count", 12, "--device", "cpu", "--out", run_dir)
    assert f"run folder: {run_dir}" in out and "epoch 2/2" in out and f"llm4seg eval {run_dir}/checkpoints/best" in out

    ckpt = run_dir / "checkpoints" / "best"
    payload = json.loads(CliRunner().invoke(app, ["eval", str(ckpt), "--synthetic-count", "8", "--json"]).stdout)
    out = run("eval", ckpt, "--synthetic-count", 8)
    for name in ("iou", "dice", "hd95"):
        assert f"{payload[name] * (1 if name == 'hd95' else 100):.2f}" in out, name

    art = tmp_path / "art"
    out = run("export", ckpt, "--out", art, "--fp16", "--parity-images", 2)
    manifest = json.loads((art / "manifest.json").read_text())["artifacts"]
    for name, entry in manifest.items():
        assert name in out and f"{entry['parity']['dice_agreement']:.4f}" in out
    assert str(art / "manifest.json") in out

    out = run("bench", "--engine", exported[0] / "model.onnx", "--engine", exported[0] / "model.fp16.onnx",
              "--iterations", 2, "--warmup", 1, "--out", tmp_path / "bench")
    bench = json.loads((tmp_path / "bench" / "bench.json").read_text())
    for row in bench["results"]:
        assert f"{row['latency_ms']['p50']:.1f}" in out and f"{row['throughput_ips']:.1f}" in out
    assert "model.fp16.onnx" in out and "model.onnx" in out
