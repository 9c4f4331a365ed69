"""benchmarks/gpu/gpu_compare_slot.py, on the CPU: a matrix carried across slots by its small state
archive; a slot that starts nothing still reports, and finished runs are never trained again."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest

from tests.benchmarks import BENCHMARKS, load_script


def slot(npz, state, out, work, start_by=None):
    cmd = [sys.executable, "-m", "benchmarks.gpu.gpu_compare_slot", "--npz", str(npz), "--variants", "cmunext_s,cmunext",
           "--seeds", "0", "--epochs", "1", "--image-size", "32", "--parallel", "1", "--device", "cpu",
           "--minutes", "5", "--work", str(work), "--out", str(out)]
    cmd += ["--state", str(state)] if state else []
    cmd += ["--start-by", str(start_by)] if start_by is not None else []
    subprocess.run(cmd, check=True, capture_output=True, timeout=600, cwd=BENCHMARKS.parent)
    return json.loads((out / "slot.json").read_text()), json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_three_slots_carry_the_matrix(synthetic_folder, tmp_path):
    load_script("device_dataset").pack(synthetic_folder, 32, tmp_path / "d.npz")
    first, report = slot(tmp_path / "d.npz", None, tmp_path / "o1", tmp_path / "w1", start_by=0)
    assert first["finished"] == [] and report["missing"] == ["cmunext_s-all-s0", "cmunext-all-s0"]
    second, report = slot(tmp_path / "d.npz", tmp_path / "o1" / "compare_state.tgz", tmp_path / "o2", tmp_path / "w2")
    assert second["rc"] == 0 and len(second["finished"]) == 2 and report["missing"] == []
    with tarfile.open(tmp_path / "o2" / "compare_state.tgz") as tar:
        assert sorted(tar.getnames()) == ["compare.json", "runs/cmunext-all-s0/scores.json",
                                          "runs/cmunext_s-all-s0/scores.json", "slot_data.json"]
    # A fresh machine (new work folder): the archive alone brings the finished runs back, untrained.
    third, again = slot(tmp_path / "d.npz", tmp_path / "o2" / "compare_state.tgz", tmp_path / "o3", tmp_path / "w3", start_by=0)
    assert third["restored"] == 2 and again["missing"] == [] and again["runs"] == report["runs"]
    assert not (tmp_path / "w3" / "cmp" / "runs" / "cmunext-all-s0" / "checkpoints").exists()
