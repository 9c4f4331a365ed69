"""Hub source: ranged reads of one layer, the HF cache, HF_HUB_OFFLINE, and gated models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from llm4seg.errors import LLMSourceError
from llm4seg.llm import load_layer
from llm4seg.llm.hub import HubSource, HuggingFaceClient


class LocalHub:
    """Stands in for the hub: a folder, counting the bytes read through `open`."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.bytes_read, self.downloads = folder, 0, []

    def download(self, filename):
        self.downloads.append(filename)
        path = self.folder / filename
        return path if path.is_file() else None

    def cached(self, filename):
        return None

    def open(self, filename):
        hub = self
        raw = open(self.folder / filename, "rb")

        class Counting:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                raw.close()

            def seek(self, pos):
                raw.seek(pos)

            def read(self, n):
                data = raw.read(n)
                hub.bytes_read += len(data)
                return data

        return Counting()


@pytest.fixture()
def layer_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM4SEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_llama_sharded", "tiny_qwen2"])
def test_ranged_reads_fetch_only_the_layer(fixture, request, layer_cache):
    folder, model = request.getfixturevalue(fixture)
    hub = LocalHub(folder)
    src = HubSource("org/tiny", client=hub)
    tensors = src.read_layer(1)
    for name, tensor in model.model.layers[1].state_dict().items():
        assert torch.equal(tensors[name], tensor.float()), name
    layer_bytes = sum(t.numel() * 4 for t in tensors.values())
    total = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    assert layer_bytes <= hub.bytes_read < layer_bytes + 64 * 1024 < total
    assert not any(f.endswith(".safetensors") for f in hub.downloads)
    # Second read comes from the layer cache, with no hub traffic.
    hub.bytes_read = 0
    again = HubSource("org/tiny", client=hub).read_layer(1)
    assert hub.bytes_read == 0 and all(torch.equal(again[k], tensors[k]) for k in tensors)


def make_hf_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay out `folder` as huggingface_hub's cache does (refs/main -> snapshots/<commit>/)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        shutil.copy(f, snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snap.name)


def test_offline_reads_from_hf_cache_through_huggingface_hub(tiny_qwen2, tmp_path, monkeypatch, layer_cache):
    import huggingface_hub.constants as constants

    folder, model = tiny_qwen2
    make_hf_cache(tmp_path / "hub", "org/tiny-qwen", folder)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights = load_layer("org/tiny-qwen", 2)
    assert weights.spec.arch == "qwen2"
    for name, tensor in model.model.layers[2].state_dict().items():
        assert torch.equal(weights.tensors[name], tensor.float()), name


def test_offline_without_cache_says_how_to_fix(tmp_path, monkeypatch, layer_cache):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LLMSourceError, match="not in the HF cache") as info:
        load_layer("meta-llama/Llama-3.2-1B", 14)
    assert "HF_HUB_OFFLINE" in info.value.hint or "network" in info.value.hint


def forbidden_response():
    """A 403 response of the HTTP library this huggingface_hub is built on: its errors module imports
    `Response` from httpx2 (hub 2.x), httpx (1.x, the GPU image's) or requests (0.x)."""
    import importlib

    from huggingface_hub import errors

    http = importlib.import_module(errors.Response.__module__.split(".")[0])
    if http.__name__ == "requests":
        response = http.Response()
        response.status_code, response.url = 403, "https://huggingface.co/x"
        return response
    return http.Response(403, request=http.Request("GET", "https://huggingface.co/x"))


def test_gated_model_without_token(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    response = forbidden_response()

    def gated(*args, **kwargs):
        raise GatedRepoError("403 gated", response=response)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    with pytest.raises(LLMSourceError, match="gated model") as info:
        HubSource("meta-llama/Llama-3.2-1B", client=HuggingFaceClient("meta-llama/Llama-3.2-1B")).spec()
    assert "HF_TOKEN" in info.value.hint and "huggingface.co/meta-llama/Llama-3.2-1B" in info.value.hint


def test_a_remote_shard_claiming_a_huge_header_or_tensor_is_refused_before_reading():
    """Issue 20: ranged reads of a hub shard never request what a crafted header claims."""
    import io
    import json

    import pytest

    from llm4seg.errors import LLMSourceError
    from llm4seg.llm.hub import read_safetensors_header, tensors_from_ranges

    with pytest.raises(LLMSourceError, match="claims a 1099511627776-byte header"):
        read_safetensors_header(io.BytesIO((1 << 40).to_bytes(8, "little") + b"{}"))
    header = json.dumps({"model.layers.0.w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 1 << 62]}}).encode()
    stream = io.BytesIO(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    with pytest.raises(LLMSourceError, match="claims bytes 0-4611686018427387904"):
        tensors_from_ranges(stream, ["model.layers.0.w"], "model.layers.0.")
