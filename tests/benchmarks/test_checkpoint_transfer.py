"""The device channel's checkpoint transfer: pack the trained tensors, rebuild the frozen random
layer from the seed, refuse when the rebuilt layer differs."""

from __future__ import annotations

import json

import pytest
import torch

import llm4seg
from tests.benchmarks import load_script

def transfer_module():
    return load_script("checkpoint_transfer")


@pytest.fixture
def seeded_checkpoint(tmp_path):
    torch.manual_seed(0)  # what `llm4seg train --seed 0` does before creating the model
    model = llm4seg.create_model("llm4seg_random", llm="shape:smollm2-135m", image_size=64, size="s")
    with torch.no_grad():  # stands in for training: the trained tensors move away from their init
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    return llm4seg.save_checkpoint(model, tmp_path / "ckpt", extra={"epoch": 3})


def test_pack_then_unpack_rebuilds_the_same_checkpoint(seeded_checkpoint, tmp_path):
    transfer = transfer_module()
    transfer.pack(seeded_checkpoint, tmp_path / "packed")
    packed_bytes = sum(f.stat().st_size for f in (tmp_path / "packed").glob("trained_*.safetensors"))
    full_bytes = (seeded_checkpoint / "model.safetensors").stat().st_size
    assert packed_bytes < full_bytes / 2  # the frozen layer stayed behind
    transfer.unpack(tmp_path / "packed", tmp_path / "rebuilt", seed=0)
    a, b = llm4seg.load_checkpoint(seeded_checkpoint), llm4seg.load_checkpoint(tmp_path / "rebuilt")
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert json.loads((tmp_path / "rebuilt" / "config.json").read_text())["extra"] == {"epoch": 3}


def test_unpack_refuses_another_seed(seeded_checkpoint, tmp_path):
    transfer = transfer_module()
    transfer.pack(seeded_checkpoint, tmp_path / "packed")
    with pytest.raises(SystemExit, match="differs from the recorded one"):
        transfer.unpack(tmp_path / "packed", tmp_path / "rebuilt", seed=1)
    assert not (tmp_path / "rebuilt" / "model.safetensors").exists()
