"""benchmarks/gpu/gpu_session.py's choices from the speed stage: the long run uses the CUDA-graph step
only when that step ran and was faster, and as many epochs as the measured speed allows."""

from __future__ import annotations

import json
import os

from tests.benchmarks import load_script


def speeds(tmp_path, eager_it_s, graph_it_s=None):
    results = [{"way": "authors (eager FP32, CPU per-sample aug)", "it_per_s": 10.0, "steps_per_epoch": 57, "val_s": 1.0},
               {"way": "project (bf16, channels_last, GPU data)", "it_per_s": eager_it_s, "steps_per_epoch": 57, "val_s": 1.0}]
    if graph_it_s is not None:
        results.append({"way": "project + whole step as a CUDA graph (--step-mode graph)", "it_per_s": graph_it_s,
                        "steps_per_epoch": 57, "val_s": 1.0})
    path = tmp_path / "gpu_train.json"
    path.write_text(json.dumps({"results": results}))
    return path


def test_step_mode_and_epochs_follow_the_measured_speed(tmp_path):
    session = load_script("gpu_session")
    assert session.fastest_step_mode(speeds(tmp_path, 30.0, 75.0)) == "graph"
    assert session.fastest_step_mode(speeds(tmp_path, 30.0, 20.0)) == "eager"
    assert session.fastest_step_mode(speeds(tmp_path, 30.0)) == "eager"  # the graph way failed: no row
    assert session.fastest_step_mode(tmp_path / "missing.json") == "eager"
    path = speeds(tmp_path, 30.0, 57.0)  # graph: 1 s of steps + 1 s of validation per epoch
    assert session.epochs_that_fit(path, 250, 300, "graph") == 100  # 250 / (1.25 x 2 s)
    assert session.epochs_that_fit(path, 1000, 300, "graph") == 300  # capped at the protocol's 300
    assert session.epochs_that_fit(path, 250, 300, "eager") == int(250 / (1.25 * (57 / 30 + 1)))


def test_stage_results_fold_into_one_file(tmp_path):
    """The device returns at most 8 files: each stage's JSON joins session.json, later ones too."""
    session = load_script("gpu_session")
    (tmp_path / "gpu_train.json").write_text(json.dumps({"results": [1]}))
    (tmp_path / "busi_run").mkdir()
    (tmp_path / "busi_run" / "config.json").write_text("{}")  # the packed checkpoint stays as it is
    session.fold_results(tmp_path)
    (tmp_path / "gpu_runtime.json").write_text(json.dumps({"complete": False}))
    (tmp_path / "broken.json").write_text("{not json")
    session.fold_results(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["session.json"]
    merged = json.loads((tmp_path / "session.json").read_text())
    assert merged["gpu_train.json"] == {"results": [1]} and merged["gpu_runtime.json"] == {"complete": False}
    assert merged["broken.json"] == {"unreadable": "{not json"}
    assert (tmp_path / "busi_run" / "config.json").is_file()


def test_a_second_call_starts_from_an_empty_work_folder(tmp_path, monkeypatch):
    """A warm device keeps /tmp: the old run folder (which `train` refuses to overwrite, and which
    must never be packed as this call's result), the old export and the compile caches go."""
    session = load_script("gpu_session")
    work = tmp_path / "work"
    for stale in ("run/checkpoints/best", "busi_art", "runtime/cache/compiled", "inductor"):
        (work / stale).mkdir(parents=True)
        (work / stale / "x").write_text("old")
    (work / "busi" / "images").mkdir(parents=True)  # the unpacked dataset is rewritten, not timed: kept
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")  # restored after the test
    session.fresh_work(work)
    assert sorted(p.name for p in work.iterdir()) == ["busi"]
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(work / "inductor")
