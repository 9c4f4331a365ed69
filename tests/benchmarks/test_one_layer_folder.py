"""benchmarks/gpu/one_layer_folder.py: the SmolLM2 layer written as a one-layer HF folder reads back bit-identical."""

from __future__ import annotations

import torch

from llm4seg.llm import load_layer
from tests.benchmarks import load_script

def test_one_layer_folder_round_trip(smollm2_layer, tmp_path):
    folder = load_script("one_layer_folder").write_folder("smollm2", 27, tmp_path / "l27")
    back = load_layer(str(folder), 27)
    assert back.spec == smollm2_layer.spec
    assert back.tensors.keys() == smollm2_layer.tensors.keys()
    assert all(torch.equal(back.tensors[k], smollm2_layer.tensors[k]) for k in back.tensors)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 20e6
