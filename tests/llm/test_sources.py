"""Reading one layer from GGUF, HF folders (single and sharded) and the hub, against transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm4seg.errors import LLMSourceError
from llm4seg.llm import load_layer, resolve_source
from llm4seg.llm.spec import LayerSpec
from llm4seg.models.decoder_layer import DecoderLayer
from llm4seg.models.rope import rope_tables


def hf_layer_state(model, layer):
    return {k: v.float() for k, v in model.model.layers[layer].state_dict().items()}


def assert_layer_runs_like_llm(model, spec: LayerSpec, tensors, layer: int, tokens: int = 20):
    """Our layer on the LLM's own hidden states reproduces the LLM's next hidden states."""
    ids = torch.randint(0, model.config.vocab_size, (2, tokens))
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
        ours = DecoderLayer(spec)
        ours.load_state_dict(tensors)
        cos, sin = rope_tables(spec, 1, tokens, "rope1d")
        out = ours(hidden[layer], cos, sin, causal=True)
    torch.testing.assert_close(out, hidden[layer + 1], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_llama_sharded", "tiny_qwen2"])
def test_hf_folder_layer_equals_transformers(fixture, request):
    folder, model = request.getfixturevalue(fixture)
    weights = load_layer(str(folder), 1)
    expected = hf_layer_state(model, 1)
    assert set(weights.tensors) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(weights.tensors[name], tensor), name
    assert_layer_runs_like_llm(model, weights.spec, weights.tensors, 1)


def test_sharded_folder_reads_only_the_layers_shard(tiny_llama_sharded, monkeypatch):
    folder, _ = tiny_llama_sharded
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    shards = set(index.values())
    assert len(shards) > 2, "the fixture should be sharded"
    needed = {f for k, f in index.items() if k.startswith("model.layers.2.")}
    import safetensors

    opened = []
    real = safetensors.safe_open

    def spy(path, *a, **kw):
        opened.append(path.rsplit("/", 1)[-1])
        return real(path, *a, **kw)

    monkeypatch.setattr(safetensors, "safe_open", spy)
    load_layer(str(folder), 2)
    assert set(opened) == needed


def test_missing_shard_is_named(tiny_llama_sharded, tmp_path):
    folder, _ = tiny_llama_sharded
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    index = json.loads((copy / "model.safetensors.index.json").read_text())["weight_map"]
    shard = index["model.layers.0.mlp.down_proj.weight"]
    (copy / shard).unlink()
    with pytest.raises(LLMSourceError, match=f"shard {shard}"):
        load_layer(str(copy), 0)


def test_layer_out_of_range_says_how_many(tiny_llama):
    folder, _ = tiny_llama
    with pytest.raises(LLMSourceError, match="it has 3 layers") as info:
        load_layer(str(folder), 3)
    assert "0 to 2" in info.value.hint


def test_unsupported_architecture_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(LLMSourceError, match="unsupported LLM architecture") as info:
        load_layer(str(tmp_path), 0)
    assert "llama" in info.value.hint and "qwen2" in info.value.hint


def test_unknown_source_lists_forms():
    with pytest.raises(LLMSourceError, match="unknown LLM source") as info:
        resolve_source("no such thing!")
    assert "smollm2" in info.value.hint


def test_shape_source_has_no_weights():
    src = resolve_source("shape:llama-3.2-1b")
    assert src.spec().hidden_size == 2048 and src.spec().frozen_params == 60_821_504
    with pytest.raises(LLMSourceError, match="shapes only"):
        src.read_layer(0)


def test_deepseek_shape():
    spec = resolve_source("shape:deepseek-r1-distill-qwen-1.5b").spec()
    assert (spec.arch, spec.hidden_size, spec.qkv_bias) == ("qwen2", 1536, True)
    assert round(spec.frozen_params / 1e6, 1) == 46.8


def test_index_pointing_outside_its_folder_is_refused(tiny_llama_sharded, tmp_path):
    folder, _ = tiny_llama_sharded
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    path = copy / "model.safetensors.index.json"
    index = json.loads(path.read_text())
    shard = index["weight_map"]["model.layers.0.mlp.down_proj.weight"]
    shutil.copy(copy / shard, tmp_path / "outside.safetensors")
    index["weight_map"] = {k: ("../outside.safetensors" if v == shard else v) for k, v in index["weight_map"].items()}
    path.write_text(json.dumps(index))
    with pytest.raises(LLMSourceError, match="points outside its folder"):
        load_layer(str(copy), 0)


def test_an_hf_cache_snapshot_with_symlinked_shards_loads(tiny_llama_sharded, tmp_path):
    """Issue 20, item 15: the HF cache holds shards as symlinks into ../../blobs; they were refused
    with a message naming a file that does not exist."""
    import shutil

    import torch

    folder, _ = tiny_llama_sharded
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "abc123"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    for i, f in enumerate(sorted(folder.iterdir())):
        blob = blobs / f"blob{i}"
        shutil.copy(f, blob)
        (snapshot / f.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    a, b = load_layer(str(folder), 1).tensors, load_layer(str(snapshot), 1).tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage", ["header length 2^40", "tensor beyond the file"])
def test_a_crafted_safetensors_shard_is_refused_before_reading(tiny_llama, tmp_path, damage):
    """Issue 20, item 15: a header length of 2^40, or a tensor claiming 2^62 bytes, gave tracebacks."""
    import shutil

    folder, _ = tiny_llama
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    shard = copy / "model.safetensors"
    data = bytearray(shard.read_bytes())
    if damage == "header length 2^40":
        data[:8] = (1 << 40).to_bytes(8, "little")
    else:
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        name = next(k for k in header if k != "__metadata__")
        header[name]["data_offsets"] = [0, 1 << 62]
        blob = json.dumps(header).encode()
        data = bytearray(len(blob).to_bytes(8, "little") + blob + data[8 + n:])
    shard.write_bytes(bytes(data))
    with pytest.raises(LLMSourceError, match="not a valid safetensors file") as info:
        load_layer(str(copy), 0)
    assert "download" in info.value.hint


def test_an_hf_config_without_hidden_size_is_named(tiny_llama, tmp_path):
    import shutil

    folder, _ = tiny_llama
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["hidden_size"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(LLMSourceError, match="hidden_size = None"):
        load_layer(str(copy), 0)
