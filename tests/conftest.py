"""Shared fixtures: tiny HF-format LLM folders written by the tests, and the real SmolLM2 layer."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
import torch

from llm4seg.data.synthetic import write_synthetic_folder
from llm4seg.training.config import TrainConfig
from llm4seg.training.run import train

# Real datasets (BUSI, Kvasir-SEG) for the tests that read them: $LLM4SEG_DATA, a folder holding
# busi/ and kvasir-seg/ as their publishers lay them out, else ../shared/datasets beside the clone.
DATASETS = Path(os.environ.get("LLM4SEG_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets")


def dataset_or_skip(name: str) -> Path:
    """DATASETS/name, or a skip that says where it was looked for and how to point the tests at it."""
    folder = DATASETS / name
    if not folder.is_dir():
        pytest.skip(f"{name} not found at {folder}: set LLM4SEG_DATA to the folder that holds {name}/ to run this test")
    return folder


def installed_or_skip(probe, what: str, fix: str) -> None:
    """Skip when `probe()` raises (the optional component `what` is missing), naming `fix`; under
    CI=true fail instead: CI installs every component (Makefile), so a green CI means they ran."""
    try:
        probe()
    except Exception as exc:  # ImportError, or a gi typelib/plugin that is missing
        message = f"{what} is not available here ({exc}); {fix}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI the tests of {what} may not skip: {message}")
        pytest.skip(message)


@contextlib.contextmanager
def address_space_limit(extra_mb: float):
    """Lower this process's address-space limit (RLIMIT_AS, as `ulimit -v`) to what it uses now plus
    `extra_mb` for the block: an allocation beyond it raises MemoryError instead of succeeding, so a
    test proves a reader refuses a bomb before allocating it. The old limit comes back after."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = used + int(extra_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _datasets_line() -> str:
    found = [n for n in ("busi", "kvasir-seg") if (DATASETS / n).is_dir()]
    return f"llm4seg datasets: {DATASETS} ({', '.join(found) or 'none found'}; set LLM4SEG_DATA to change)"


def pytest_report_header(config):
    return _datasets_line()


def pytest_terminal_summary(terminalreporter):
    """The datasets line again at the end: `pytest -q` (make test) prints no header."""
    terminalreporter.write_line(_datasets_line())


TINY_LLAMA = dict(
    hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
    num_hidden_layers=3, vocab_size=97, max_position_embeddings=512, rms_norm_eps=1e-5,
    rope_theta=500000.0, tie_word_embeddings=False,
    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
)
TINY_QWEN2 = dict(
    hidden_size=48, intermediate_size=80, num_attention_heads=6, num_key_value_heads=2,
    num_hidden_layers=3, vocab_size=97, max_position_embeddings=512, rms_norm_eps=1e-6,
    rope_theta=10000.0, tie_word_embeddings=False,
)


def write_tiny_model(folder, arch: str, shard: bool = False, seed: int = 0):
    """Write a random tiny LLaMA or Qwen2 in HF format; returns the transformers model."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    if arch == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA))
    else:
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**TINY_QWEN2))
    # Random RMSNorm gains and biases, so a loader that skips them cannot pass.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if "norm" in name else 0.0, 0.3)
    model.eval()
    model.save_pretrained(folder, max_shard_size="60KB" if shard else "1GB")
    return model


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_llama")
    return folder, write_tiny_model(folder, "llama")


@pytest.fixture(scope="session")
def tiny_llama_sharded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_llama_sharded")
    return folder, write_tiny_model(folder, "llama", shard=True, seed=1)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_qwen2")
    return folder, write_tiny_model(folder, "qwen2")


@pytest.fixture(scope="session")
def smollm2_layer():
    from llm4seg.llm import load_layer

    return load_layer("smollm2", 27)

@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_folder(root, 24, size=96, seed=5)
    return root


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, tiny_llama):
    """A checkpoint that segments on any x86-64 (validation Dice 0.91 after 10 epochs with AVX-512,
    AVX2 and the default kernels alike; tests/export/test_frames_graph.py checks that it segments),
    so agreement tests compare real masks, not two empty ones (4 epochs at lr 0.01 gave empty masks
    with AVX-512 kernels)."""
    run = tmp_path_factory.mktemp("run") / "r"
    train(TrainConfig(out=str(run), model="llm4seg", model_overrides={"llm": str(tiny_llama[0]), "size": "s"},
                      image_size=64, epochs=10, lr=0.05, batch_size=8, synthetic_count=64, device="cpu", seed=1,
                      checkpoint_every_s=0.0))
    return run / "checkpoints" / "last"


@pytest.fixture(scope="session")
def exported(tmp_path_factory, trained_checkpoint, synthetic_folder):
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("artifacts")
    opts = ExportOptions(out=out, fp16=True, int8=True, pt2=True, calib=str(synthetic_folder), parity_images=8,
                         calib_images=8, max_int8_drop=0.05, min_agreement=0.95)
    return out, export_checkpoint(trained_checkpoint, opts, log=lambda s: None)


def write_sealed(folder, manifest):
    """Write `manifest` (a dict with an 'artifacts' table) as folder/manifest.json with every entry
    sealed again: for tests that change an entry on purpose to reach a check past the digest's."""
    from llm4seg.runtime.core.entry import sealed

    manifest = dict(manifest, artifacts={k: sealed(v) for k, v in manifest["artifacts"].items()})
    (Path(folder) / "manifest.json").write_text(json.dumps(manifest))


def graph_with_external_data(location):
    """An ONNX graph (image + w -> prob, 64 px) whose weight `w` is external data at `location`
    (relative to the graph's folder): for the tests of graphs pointing outside their folder."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((1, 1, 64, 64), np.float32), "w")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    for key, value in (("location", location), ("offset", "0"), ("length", str(64 * 64 * 4))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["image", "w"], ["prob"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, 64, 64])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
