"""The compare matrix on Ray and SLURM (issue 37): a local Ray cluster with 4 logical GPUs started
once by this module (every cell its own CUDA_VISIBLE_DEVICES, a worker killed mid-cell retried,
a killed driver continued by the same command, the report equal to a local run's), submitit's
local executor running the SLURM path's code, and the sbatch script it would submit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from llm4seg.cli.main import app
from llm4seg.compare import Matrix, run_matrix
from llm4seg.errors import ConfigError
from llm4seg.executors import ExecutorOptions, attempts_of, sbatch_script
from tests.conftest import installed_or_skip

TRAIN = {"image_size": 32, "epochs": 1, "batch_size": 4, "synthetic_count": 12, "device": "cpu"}
ARGS = ["compare", "--variants", "cmunext_s,cmunext", "--seeds", "3,4", "--epochs", "1", "--image-size", "32",
        "--batch-size", "4", "--synthetic-count", "12", "--device", "cpu", "--json"]


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 4 logical GPUs and 4 CPUs, shared by this module's tests."""
    installed_or_skip(lambda: __import__("ray"), "Ray", "pip install 'llm4seg[ray]' (make setup installs it)")
    import ray

    ray.init(num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_each_cell_gets_its_own_gpu_and_the_report_equals_a_local_runs(ray_cluster, tmp_path):
    local = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "local")])
    on_ray = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "ray"), "--executor", "ray"])
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    a, b = json.loads(local.stdout), json.loads(on_ray.stdout)
    assert len(a["runs"]) == len(b["runs"]) == 4 and not b["missing"] and not b["failed"]
    for ra, rb in zip(a["runs"], b["runs"]):  # same seeds, same cells: the same training
        assert (ra["variant"], ra["seed"]) == (rb["variant"], rb["seed"])
        assert ra["metrics"] == pytest.approx(rb["metrics"], rel=1e-5)
    matrix = Matrix(variants=["cmunext_s", "cmunext"], splits=[None], seeds=[3, 4], train=TRAIN)
    devices = [attempts_of(tmp_path / "ray", cell)[0]["cuda_visible_devices"] for cell in matrix.cells()]
    assert all(d is not None and len(d.split(",")) == 1 for d in devices), devices  # one GPU each
    # 4 cells submitted at once to 4 logical GPUs (and 4 CPUs) run at once: never two on one GPU.
    assert sorted(devices) == ["0", "1", "2", "3"], devices


def test_a_worker_killed_mid_cell_is_retried_and_the_report_is_complete(ray_cluster, tmp_path):
    out = tmp_path / "cmp"
    matrix = Matrix(variants=["cmunext_s", "cmunext"], splits=[None], seeds=[5], train=dict(TRAIN, epochs=3))
    victim = matrix.cells()[1]
    killed = {}

    def kill_first_attempt():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            attempts = attempts_of(out, victim)
            if attempts:
                os.kill(attempts[0]["pid"], signal.SIGKILL)  # the Ray worker running the cell, mid-cell
                killed["pid"] = attempts[0]["pid"]
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_first_attempt)
    watcher.start()
    report = run_matrix(matrix, out, executor=ExecutorOptions(kind="ray", retries=2))
    watcher.join()
    assert killed, "the cell finished before it could be killed"
    attempts = attempts_of(out, victim)
    assert len(attempts) == 2 and attempts[0]["pid"] == killed["pid"] != attempts[1]["pid"]
    assert len(report["runs"]) == 2 and not report["missing"] and not report["failed"]


def test_a_cell_that_keeps_failing_is_counted_and_its_error_kept(ray_cluster, tmp_path):
    matrix = Matrix(variants=["cmunext_s", "cmunext"], splits=[None], seeds=[6],
                    train=dict(TRAIN, lr=float("nan")))  # refused by the training's own check, every time
    report = run_matrix(matrix, tmp_path / "cmp", executor=ExecutorOptions(kind="ray", retries=1))
    assert not report["runs"] and len(report["failed"]) == 2
    failed = report["failed"][0]
    assert failed["attempts"] == 2 and "lr" in failed["error"].lower(), failed
    assert "failed after 2 attempt(s)" in (tmp_path / "cmp" / "report.md").read_text()


def test_a_killed_driver_continues_with_the_same_command(ray_cluster, tmp_path):
    out = tmp_path / "cmp"
    command = [sys.executable, "-m", "llm4seg.cli.main", *ARGS, "--out", str(out), "--executor", "ray",
               "--ray-address", ray_cluster, "--epochs", "2", "--parallel", "1"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(out.glob("runs/*/scores.json")):
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)  # the driver dies after the first cell was scored
    driver.wait()
    scored_before = {p.parent.name: p.read_bytes() for p in out.glob("runs/*/scores.json")}
    assert scored_before and not (out / "report.json").exists()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    report = json.loads(again.stdout)
    assert len(report["runs"]) == 4 and not report["missing"]
    for name, data in scored_before.items():  # finished cells were kept, not run again
        assert (out / "runs" / name / "scores.json").read_bytes() == data
        assert len(attempts_of(out, _cell(name))) == 1


def _cell(name):
    variant, seed = name.rsplit("-s", 1)
    variant = variant.rsplit("-", 1)[0]
    return (variant, None, int(seed))


def test_the_slurm_path_runs_its_code_on_submitits_local_executor(tmp_path):
    installed_or_skip(lambda: __import__("submitit"), "submitit", "pip install 'llm4seg[slurm]' (make setup installs it)")
    matrix = Matrix(variants=["cmunext_s", "cmunext"], splits=[None], seeds=[3], train=TRAIN)
    report = run_matrix(matrix, tmp_path / "cmp", executor=ExecutorOptions(kind="slurm", slurm_cluster="local"))
    assert len(report["runs"]) == 2 and not report["failed"]
    assert all(attempts_of(tmp_path / "cmp", c)[0]["pid"] != os.getpid() for c in matrix.cells())  # other processes
    assert list((tmp_path / "cmp" / "slurm").glob("*/*_submitted.pkl"))  # submitit's own job files


def test_the_sbatch_script_asks_for_one_gpu_per_task_and_requeue_time():
    installed_or_skip(lambda: __import__("submitit"), "submitit", "pip install 'llm4seg[slurm]'")
    from pathlib import Path

    script = sbatch_script(ExecutorOptions(kind="slurm", slurm_partition="gpu", slurm_account="lab42",
                                           slurm_time_min=90), 9, Path("/shared/cmp/slurm/%j"))
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab42", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --array=0-8%9",
                 "#SBATCH --signal=USR2@120"):
        assert line in script, script


def test_bad_executor_options_are_refused(tmp_path):
    for extra, words in ((["--executor", "kubernetes"], "--executor 'kubernetes' is not known"),
                         (["--executor", "ray", "--stop-after", "5"], "--stop-after applies to --executor local"),
                         (["--retries", "-1"], "expected retries >= 0"),
                         (["--data", str(tmp_path / "nowhere")], "does not exist on this machine")):
        result = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "x"), *extra])
        assert result.exit_code == 1 and words in result.output, result.output
    with pytest.raises(ConfigError):
        ExecutorOptions(cells_per_gpu=0).check()


def test_slurm_without_sbatch_is_refused_not_run_locally(tmp_path, monkeypatch):
    """Issue 44, item 9: on a machine without `sbatch`, submitit quietly ran every cell locally."""
    installed_or_skip(lambda: __import__("submitit"), "submitit", "pip install 'llm4seg[slurm]'")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    result = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "x"), "--executor", "slurm"])
    assert result.exit_code == 1 and "needs SLURM's `sbatch`" in result.output, result.output
    assert not (tmp_path / "x" / "cells").exists()


def test_an_unreachable_ray_address_is_refused_within_its_timeout(tmp_path):
    """Ray retries an unreachable address forever: `compare` said nothing, for ever."""
    installed_or_skip(lambda: __import__("ray"), "Ray", "pip install 'llm4seg[ray]'")
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "llm4seg.cli.main", *ARGS, "--out", str(tmp_path / "x"),
                             "--executor", "ray", "--ray-address", "127.0.0.1:1"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "LLM4SEG_RAY_CONNECT_TIMEOUT_S": "8"})
    assert result.returncode == 1 and "did not connect to 127.0.0.1:1 within 8 s" in result.stderr, result.stderr[-2000:]
    assert time.monotonic() - t0 < 90


def test_a_cell_no_node_could_run_is_refused(ray_cluster, tmp_path):
    """`--cpus-per-cell` beyond every node waited forever."""
    result = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path / "x"), "--executor", "ray",
                                      "--cpus-per-cell", "64"])
    assert result.exit_code == 1 and "no cell could ever start" in result.output, result.output
