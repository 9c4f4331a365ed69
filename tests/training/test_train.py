"""Training: run folder contents, frozen layer untouched, resume equality, loss, DDP on gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import llm4seg
from llm4seg.errors import ConfigError
from llm4seg.training.config import TrainConfig
from llm4seg.training.losses import bce_dice_loss
from llm4seg.training.run import train


def tiny_cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), model="cmunext_s", image_size=32, epochs=2, batch_size=4, synthetic_count=20,
                device="cpu", seed=7, checkpoint_every_s=0.0)
    base.update(kw)
    return TrainConfig(**base)


def test_run_folder_contents(tmp_path):
    summary = train(tiny_cfg(tmp_path / "run"))
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all("val_dice" in r and r["it_per_s"] > 0 for r in rows)
    for name in ("config.json", "curves.png", "train.log", "checkpoints/best/config.json",
                 "checkpoints/last/model.safetensors", "state/CURRENT"):
        assert (run / name).is_file(), name
    assert summary["best_epoch"] in (1, 2) and 0 <= summary["best_val_iou"] <= 1
    assert llm4seg.load_checkpoint(run / "checkpoints" / "best").config.name == "cmunext_s"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["n_train"] == 16 and cfg["data"]["n_val"] == 4 and cfg["train"]["lr"] == 0.01


def test_frozen_layer_is_untouched_and_has_no_optimizer_state(tmp_path, tiny_llama):
    source = str(tiny_llama[0])
    cfg = tiny_cfg(tmp_path / "run", model="llm4seg", model_overrides={"llm": source, "layer": 1}, epochs=1)
    train(cfg)
    trained = llm4seg.load_checkpoint(tmp_path / "run" / "checkpoints" / "last")
    fresh = llm4seg.create_model("llm4seg", llm=source, layer=1, image_size=32)
    for (name, a), b in zip(trained.block.layer.state_dict().items(), fresh.block.layer.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(trained.block.adapter_in.weight, fresh.block.adapter_in.weight)
    current = json.loads((tmp_path / "run" / "state" / "CURRENT").read_text())["state"]
    buffers = load_file(str(tmp_path / "run" / "state" / current / "optimizer.safetensors"))
    assert buffers and not any(k.startswith("block.layer.") for k in buffers)


class Killed(Exception):
    pass


def test_resume_after_kill_equals_uninterrupted(tmp_path, monkeypatch):
    train(tiny_cfg(tmp_path / "full", epochs=3))
    from llm4seg.training import loop

    real_end = loop.Trainer._end_epoch

    def end_then_die(self, row, rows):
        real_end(self, row, rows)
        if row["epoch"] == 2:
            raise Killed()

    monkeypatch.setattr(loop.Trainer, "_end_epoch", end_then_die)
    with pytest.raises(Killed):
        train(tiny_cfg(tmp_path / "killed", epochs=3))
    monkeypatch.setattr(loop.Trainer, "_end_epoch", real_end)
    train(TrainConfig(out=str(tmp_path / "killed")), resume=True)
    a = load_file(str(tmp_path / "full" / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "checkpoints" / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


def test_existing_run_needs_resume(tmp_path):
    train(tiny_cfg(tmp_path / "run", epochs=1))
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_cfg(tmp_path / "run", epochs=1))


def test_device_validation_matches_numpy_metrics():
    from llm4seg.metrics import image_metrics
    from llm4seg.training.val_metrics import dice_iou

    g = torch.Generator().manual_seed(0)
    pred = torch.rand(6, 16, 16, generator=g) > 0.6
    target = torch.rand(6, 16, 16, generator=g) > 0.7
    pred[0], target[0] = False, False          # both empty
    pred[1], target[1] = True, False           # false positives only
    dice, iou = dice_iou(pred, target)
    for i in range(6):
        ref = image_metrics(pred[i].numpy(), target[i].numpy())
        assert dice[i].item() == pytest.approx(ref["dice"]) and iou[i].item() == pytest.approx(ref["iou"])


def test_loss_is_half_bce_plus_dice():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    logits = torch.where(target > 0, 20.0, -20.0)
    assert bce_dice_loss(logits, target) < 1e-3
    zeros = torch.zeros(1, 1, 4, 4)  # p = 0.5 everywhere: BCE = ln 2, Dice = 2*4/(8+8)
    expected = 0.5 * torch.log(torch.tensor(2.0)) + (1 - 0.5)
    assert torch.allclose(bce_dice_loss(zeros, target), expected, atol=1e-5)


def test_ddp_two_gloo_processes(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "llm4seg.cli.main", "train", "--model", "cmunext_s", "--image-size", "32", "--epochs", "1",
           "--batch-size", "4", "--synthetic-count", "20", "--device", "cpu", "--out", str(out), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # exactly one JSON object: only rank 0 reports
    assert summary["best_val_iou"] >= 0 and summary["last"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2
    # 16 training images, global batch 4 over 2 ranks: 2 per rank, 4 steps per epoch.
    assert "4 steps per epoch" in (out / "train.log").read_text()
    assert llm4seg.load_checkpoint(out / "checkpoints" / "last").config.name == "cmunext_s"


def test_ddp_refused_run_folder_stops_every_rank(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("not a run")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "llm4seg.cli.main", "train", "--model", "cmunext_s", "--image-size", "32", "--epochs", "1",
           "--batch-size", "4", "--synthetic-count", "20", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)  # a hang fails here
    assert proc.returncode != 0 and "is not empty and is not an llm4seg run" in proc.stderr
