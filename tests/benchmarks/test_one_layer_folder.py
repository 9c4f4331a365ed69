"""benchmarks/one_layer_folder.py: the SmolLM2 layer written as a one-layer HF folder reads back bit-identical."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from llm4seg.llm import load_layer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "one_layer_folder.py"


def test_one_layer_folder_round_trip(smollm2_layer, tmp_path):
    spec = importlib.util.spec_from_file_location("one_layer_folder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = module.write_folder("smollm2", 27, tmp_path / "l27")
    back = load_layer(str(folder), 27)
    assert back.spec == smollm2_layer.spec
    assert back.tensors.keys() == smollm2_layer.tensors.keys()
    assert all(torch.equal(back.tensors[k], smollm2_layer.tensors[k]) for k in back.tensors)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 20e6
