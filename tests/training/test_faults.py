"""Kills injected at every write point of the checkpoint/resume protocol (issue 9, items 2 and 14).

Not by timing: `llm4seg.fileio.FAULT_HOOK` raises at the k-th write point of a run, for every k
an uninterrupted run passes through. After each kill, `--resume` (or, when the kill came before
the run's config existed, a fresh start in the same folder) must end bit-identical to the
uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm4seg import fileio
from llm4seg.errors import CheckpointError, ConfigError
from llm4seg.training.config import TrainConfig
from llm4seg.training.run import train


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of ours catches it."""


def cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), model="cmunext_s", image_size=32, epochs=3, batch_size=4, synthetic_count=20,
                device="cpu", seed=3, checkpoint_every_s=0.0)
    base.update(kw)
    return TrainConfig(**base)


def weights(run: Path, which: str) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / which / "model.safetensors"))


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), what
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{what}: {len(differ)} tensors differ, e.g. {differ[:3]}"


# The every-write-point run: 2 epochs of 2 steps (16 training images, batch 8), a save due after
# every step, so each epoch saves once inside it (after step 1) and once at its end.
FAULTS = dict(epochs=2, batch_size=8)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("faults") / "full"
    labels: list[str] = []
    fileio.FAULT_HOOK = labels.append
    try:
        train(cfg(run, **FAULTS))
    finally:
        fileio.FAULT_HOOK = None
    return run, labels


def kill_at(k: int):
    calls = {"n": 0}

    def hook(label: str) -> None:
        calls["n"] += 1
        if calls["n"] == k:
            raise Killed(label)
    return hook


@pytest.mark.slow
def test_resume_after_a_kill_at_every_write_point_is_bit_identical(tmp_path, uninterrupted):
    full, labels = uninterrupted
    assert len(labels) > 30 and any("published" in x for x in labels)
    # Four saves: inside epoch 1, its end, inside epoch 2, its end (issue 34: saves inside an epoch).
    assert sum(x == "replaced CURRENT" for x in labels) == 4
    for k in range(1, len(labels) + 1):
        run = tmp_path / f"k{k}"
        fileio.FAULT_HOOK = kill_at(k)
        try:
            with pytest.raises(Killed):
                train(cfg(run, **FAULTS))
        finally:
            fileio.FAULT_HOOK = None
        if (run / "config.json").is_file():
            summary = train(TrainConfig(out=str(run)), resume=True)
        else:  # killed before the run existed: the folder is empty (or holds leftovers) and starts fresh
            summary = train(cfg(run, **FAULTS))
        where = f"kill at write point {k} ({labels[k - 1]})"
        assert_same(weights(full, "last"), weights(run, "last"), where)
        assert_same(weights(full, "best"), weights(run, "best"), where)
        rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
        full_rows = [json.loads(r) for r in (full / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2], where
        assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in full_rows], where
        assert summary["epochs"] == 2
        leftovers = [p for p in run.rglob(".*") if fileio.is_leftover(p.name)]
        assert not leftovers, f"{where}: {leftovers}"


def test_a_kill_inside_an_epoch_after_a_timed_save_resumes_bit_identical(tmp_path, monkeypatch):
    """Issue 34, item 1: a long epoch was lost on Ctrl-C (saves came only at epoch ends). With a save
    due after step 3 of a 4-step epoch, a kill at step 3's end keeps that state, and the resume
    continues at step 4 of epoch 1 with the same data order and augmentations."""
    from llm4seg.training import loop

    full = tmp_path / "full"
    train(cfg(full, epochs=2, checkpoint_every_s=3600.0))  # saves at epoch ends only (the clock never runs out)
    clock = {"now": 0.0}
    monkeypatch.setattr(loop.time, "monotonic", lambda: clock["now"])
    steps = {"n": 0}
    real_epoch = loop.Trainer.train_epoch

    def killing_epoch(self, epoch, on_step=None):
        def step():
            steps["n"] += 1
            clock["now"] += 1000.0 if steps["n"] == 2 else 0.0  # the save falls due after step 3
            if steps["n"] == 3:
                raise Killed("SIGKILL inside epoch 1")
        return real_epoch(self, epoch, step)

    run = tmp_path / "r"
    monkeypatch.setattr(loop.Trainer, "train_epoch", killing_epoch)
    with pytest.raises(Killed):
        train(cfg(run, epochs=2, checkpoint_every_s=600.0))
    monkeypatch.setattr(loop.Trainer, "train_epoch", real_epoch)
    pointer = json.loads((run / "state" / "CURRENT").read_text())
    assert (pointer["epoch"], pointer["step"], pointer["epoch_step"]) == (0, 3, 3)  # kept: 3 steps into epoch 1
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    result = CliRunner().invoke(app, ["train", "--resume", str(run)])  # issue 45, item 5: it said only "resuming: RUN"
    assert result.exit_code == 0, result.output
    assert f"resuming {run} at epoch 1/2, step 3/4 of that epoch (3 optimizer steps done)" in result.output
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    assert summary.get("resumed_from", pointer["state"]) == pointer["state"]
    assert_same(weights(full, "last"), weights(run, "last"), "resumed inside epoch 1")
    assert_same(weights(full, "best"), weights(run, "best"), "resumed inside epoch 1")
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    full_rows = [json.loads(r) for r in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in full_rows]


def test_run_killed_before_its_first_save_resumes_from_scratch(tmp_path):
    run = tmp_path / "r"
    fileio.FAULT_HOOK = kill_at(3)  # config.json is written; no state yet
    try:
        with pytest.raises(Killed):
            train(cfg(run, epochs=1))
    finally:
        fileio.FAULT_HOOK = None
    assert (run / "config.json").is_file() and not (run / "state" / "CURRENT").exists()
    with pytest.raises(ConfigError, match="already holds a run") as info:
        train(cfg(run, epochs=1))
    assert "--resume" in info.value.hint
    summary = train(TrainConfig(out=str(run)), resume=True)
    assert summary["resumed_from"] is None and (run / "checkpoints" / "last" / "model.safetensors").is_file()


def test_leftovers_are_removed_on_the_next_start(tmp_path):
    run = tmp_path / "r"
    train(cfg(run, epochs=1))
    (run / "checkpoints" / ".last.tmp").mkdir()
    (run / "state" / ".model.safetensors.tmp4242").write_bytes(b"half")
    train(TrainConfig(out=str(run)), resume=True)
    assert not (run / "checkpoints" / ".last.tmp").exists()
    assert not (run / "state" / ".model.safetensors.tmp4242").exists()


def test_a_state_from_another_step_is_refused(tmp_path):
    run = tmp_path / "r"
    train(cfg(run, epochs=1))
    current = json.loads((run / "state" / "CURRENT").read_text())
    counters_path = run / "state" / current["state"] / "counters.json"
    counters = json.loads(counters_path.read_text())
    counters["optimizer_sha256"] = "0" * 64
    counters_path.write_text(json.dumps(counters))
    with pytest.raises(CheckpointError, match="inconsistent"):
        train(TrainConfig(out=str(run)), resume=True)


def test_out_folder_that_is_not_a_run_is_refused(tmp_path):
    other = tmp_path / "ckpt"
    other.mkdir()
    (other / "config.json").write_text('{"format": "llm4seg-checkpoint"}')
    with pytest.raises(ConfigError, match="not empty and is not an llm4seg run"):
        train(cfg(other, epochs=1))
    assert json.loads((other / "config.json").read_text()) == {"format": "llm4seg-checkpoint"}
    with pytest.raises(CheckpointError, match="not an llm4seg run folder"):
        train(TrainConfig(out=str(other)), resume=True)


@pytest.mark.parametrize("lr", [1e30, 1e10])
def test_a_non_finite_loss_stops_training_naming_the_step_and_saves_no_nan(tmp_path, lr):
    """Issue 20, item 4: --lr 1e30 trained to the end with NaN checkpoints and exit 0."""
    from llm4seg.errors import TrainingError

    run = tmp_path / "r"
    with pytest.raises(TrainingError, match=r"non-finite .* at step \d+ \(epoch 1\)") as info:
        train(cfg(run, epochs=3, lr=lr))
    assert "--lr" in info.value.hint
    for weights in run.glob("**/model.safetensors"):
        from safetensors.torch import load_file

        assert all(bool(torch.isfinite(t).all()) for t in load_file(str(weights)).values()), weights


@pytest.mark.parametrize("option,value", [("lr", float("inf")), ("lr", float("nan")), ("lr", -1.0),
                                          ("momentum", 1.5), ("weight_decay", float("nan")), ("poly_power", 0.0)])
def test_numeric_options_are_validated(tmp_path, option, value):
    with pytest.raises(ConfigError, match=option) as info:
        train(cfg(tmp_path / "r", **{option: value}))
    assert option in info.value.hint


def test_a_second_writer_on_a_run_folder_is_refused(tmp_path):
    """Issue 20, item 13: without a run-folder lock two processes could write one cell."""
    import subprocess
    import sys

    run = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"), str(tmp_path / ".r.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="in use by another llm4seg process"):
            train(cfg(run, epochs=1))
        assert not run.exists()
    finally:
        holder.kill()
        holder.wait()
    train(cfg(run, epochs=1))  # the lock died with its holder
    assert (run / "checkpoints" / "last" / "model.safetensors").is_file()


def test_compare_cells_ignore_a_folder_named_llm4seg_in_the_working_directory(tmp_path, monkeypatch):
    """Issue 20, item 13: `python -c` put the cwd first on sys.path, so ./llm4seg shadowed the package."""
    from llm4seg.compare import Matrix, run_matrix

    (tmp_path / "llm4seg").mkdir()
    (tmp_path / "llm4seg" / "__init__.py").write_text("raise ImportError('the wrong llm4seg')\n")
    monkeypatch.chdir(tmp_path)
    matrix = Matrix(variants=["cmunext_s", "cmunext"], splits=[None], seeds=[0], data=None,
                    train={"image_size": 32, "epochs": 1, "batch_size": 4, "synthetic_count": 12, "device": "cpu"})
    report = run_matrix(matrix, tmp_path / "cmp", parallel=2)
    assert len(report["runs"]) == 2
