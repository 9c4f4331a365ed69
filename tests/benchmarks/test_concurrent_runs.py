"""benchmarks/concurrent_runs.py on the CPU: N runs started together, each level's aggregate
throughput computed from the runs' own image counts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.benchmarks import BENCHMARKS


@pytest.mark.slow
def test_levels_report_aggregate_throughput(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks.concurrent_runs", "--levels", "1,2", "--epochs", "1",
                    "--image-size", "32", "--synthetic-count", "16", "--device", "cpu", "--model", "cmunext_s",
                    "--out", str(tmp_path)], check=True, capture_output=True, timeout=600, cwd=BENCHMARKS.parent)
    levels = json.loads((tmp_path / "concurrent_runs.json").read_text())["levels"]
    assert [r["runs"] for r in levels] == [1, 2] and levels[0]["scaling_vs_1"] == 1.0
    for r in levels:
        assert r["train_images"] == 13  # 16 synthetic images, the seeded split's training part
        assert r["images_per_s"] == pytest.approx(r["runs"] * 1 * 13 / r["wall_s"])
