"""The built wheel, installed into a fresh venv without torch, runs the runtime and the CLI
(issue 9, items 16 and 17): an editable install cannot show a package left out of the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(ROOT)])
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp / "dist").glob("llm4seg-*.whl"))
    venv = tmp / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    # The runtime's own dependencies only (numpy, OpenCV, onnxruntime, typer, rich): no torch.
    installed = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


@pytest.mark.slow
def test_wheel_runtime_and_cli_work_without_torch(wheel_venv, exported, tmp_path):
    py, cli = str(wheel_venv / "bin" / "python"), str(wheel_venv / "bin" / "llm4seg")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    probe = _run([py, "-c", "import importlib.util, llm4seg.runtime, llm4seg.runtime.core.backends.onnxruntime_backend; "
                  "print(importlib.util.find_spec('torch') is None, llm4seg.runtime.__file__)"], cwd=tmp_path, env=env)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.startswith("True") and str(wheel_venv) in probe.stdout  # the wheel, not the checkout
    assert _run([cli, "--help"], cwd=tmp_path, env=env).returncode == 0
    data = _run([py, "-c", "import pathlib, llm4seg.export as e; "
                 "print((pathlib.Path(e.__file__).parent / 'data' / 'tensorrt_onnx_support.json').is_file())"],
                cwd=tmp_path, env=env)
    assert data.stdout.strip() == "True", data.stderr[-2000:]  # package data travels in the wheel
    bench = _run([cli, "bench", "--engine", str(exported[0] / "model.onnx"), "--iterations", "2", "--warmup", "1",
                  "--json"], cwd=tmp_path, env=env)
    assert bench.returncode == 0, bench.stderr[-3000:]
    assert json.loads(bench.stdout)["results"][0]["latency_ms"]["p50"] > 0
    import cv2
    import numpy as np

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 64))
    for i in range(4):
        writer.write(np.full((64, 80, 3), 40 * i, np.uint8))
    writer.release()
    video = _run([cli, "video", str(clip), "--engine", str(exported[0] / "model.onnx"), "--out", str(tmp_path / "o.avi"),
                  "--json"], cwd=tmp_path, env=env)
    assert video.returncode == 0 and json.loads(video.stdout)["frames_out"] == 4, video.stderr[-2000:]
    for command in (["models"], ["train", "--epochs", "1"], ["info"], ["eval", str(tmp_path)],
                    ["export", str(tmp_path)]):
        result = _run([cli, *command], cwd=tmp_path, env=env)
        assert result.returncode == 1, (command, result.stderr[-2000:])
        assert "error: the package 'torch' is needed" in result.stderr and "llm4seg[train]" in result.stderr
        assert "Traceback" not in result.stderr
