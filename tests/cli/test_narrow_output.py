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


@pytest.mark.parametrize("command", ["check", "compare", "adopt-engine", "export", "train", "eval", "bench", "video",
                                     "models", "info"])
def test_help_shows_no_literal_backslash_b(command):
    """Issue 19, item 10: a '\\\\b' in a non-raw docstring reached the help text."""
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "\\b" not in result.output, result.output


def test_models_wrap_under_their_description_without_markup():
    from llm4seg.cli.models_cmd import model_lines
    from llm4seg.models.registry import describe_models

    for name, doc in describe_models().items():
        lines = model_lines(name, doc, 60)
        assert all(len(line) <= 60 for line in lines) and lines[0].startswith(name)
        assert all(line.startswith(" " * 19) for line in lines[1:]), lines
        assert " ".join(lines).split() == f"{name} {doc}".split()  # every word, none lost
    out = CliRunner().invoke(app, ["models"]).output  # piped: one line per model, brackets as written
    assert "('+Transformer')" in out and len(out.splitlines()) == len(describe_models())


def test_piped_lines_are_not_broken_at_80_columns(narrow):
    long_path = "/a/very/long/folder/name/" * 6 + "model.onnx"
    with render.stdout.capture() as captured:
        render.stdout.print(f"manifest: {long_path}")
    assert long_path in captured.get()


def test_piped_training_prints_step_lines_within_a_long_epoch(capsys):
    """Issue 19, item 9: piped, training printed nothing until the first epoch ended."""
    from types import SimpleNamespace

    from llm4seg.cli.progress import LineProgress

    now = [0.0]
    trainer = SimpleNamespace(cfg=SimpleNamespace(epochs=300), steps_per_epoch=57, state={"epoch": 0},
                              resume_point=lambda: (0, 0))
    with render.stderr.capture() as captured:
        line = LineProgress(trainer, every_s=30.0, clock=lambda: now[0])
        for _ in range(20):
            now[0] += 4.0  # 4 s a step: a line every 30 s, i.e. at steps 8 and 16
            line.on_step()
    lines = captured.get().splitlines()
    assert lines == ["epoch 1/300  step 8/57  0.25 it/s", "epoch 1/300  step 16/57  0.25 it/s"]
    # Issue 45, item 5: resumed at step 14 of epoch 11, the count goes on from there (not from 0).
    resumed = SimpleNamespace(cfg=SimpleNamespace(epochs=20), steps_per_epoch=20, state={"epoch": 10},
                              resume_point=lambda: (10, 14))
    now[0] = 0.0
    with render.stderr.capture() as captured:
        line = LineProgress(resumed, every_s=30.0, clock=lambda: now[0])
        for _ in range(5):
            now[0] += 8.0
            line.on_step()
    assert captured.get().splitlines() == ["epoch 11/20  step 18/20  0.12 it/s"]
