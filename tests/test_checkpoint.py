"""Checkpoint folders round-trip exactly, and corrupt or foreign folders get clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import llm4seg
from llm4seg.errors import CheckpointError


@pytest.fixture()
def saved(tmp_path, tiny_llama):
    torch.manual_seed(0)
    model = llm4seg.create_model("llm4seg", llm=str(tiny_llama[0]), layer=2, image_size=64).eval()
    return model, llm4seg.save_checkpoint(model, tmp_path / "ckpt")


def test_round_trip_is_exact_and_needs_no_source(saved, tiny_llama, monkeypatch):
    model, folder = saved
    monkeypatch.setattr("llm4seg.llm.sources.resolve_source", lambda *a: pytest.fail("must not read the source"))
    loaded = llm4seg.load_checkpoint(folder)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model(x), loaded(x))
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["llm"] == {"source": str(tiny_llama[0]), "layer": 2, "init": "pretrained", "trainable": False}
    assert len(cfg["frozen_sha256"]) == 64 and cfg["format_version"] == 2 and len(cfg["config_sha256"]) == 64
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_corrupt_weights_are_refused(saved):
    _, folder = saved
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        llm4seg.load_checkpoint(folder)


def test_swapped_frozen_layer_is_refused(saved):
    _, folder = saved
    state = load_file(str(folder / "model.safetensors"))
    state["block.layer.mlp.up_proj.weight"] += 1
    save_file(state, str(folder / "model.safetensors"))
    from llm4seg.fileio import file_sha256

    # A consistent weights digest (as someone re-hashing the file would write) still cannot hide it.
    _edit_config(folder, weights_sha256=file_sha256(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="frozen LLM layer"):
        llm4seg.load_checkpoint(folder)


@pytest.mark.parametrize("content", [None, "not json", json.dumps({"format": "other"})])
def test_foreign_folders(tmp_path, content):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(CheckpointError) as info:
        llm4seg.load_checkpoint(tmp_path)
    assert info.value.hint


def test_missing_folder():
    with pytest.raises(CheckpointError, match="is not a folder"):
        llm4seg.load_checkpoint("/nonexistent/ckpt")


def _edit_config(folder, rehash=True, **changes):
    """Edit config.json; by default also recompute config_sha256, as someone re-hashing would, so the
    other checks are tested on their own."""
    from llm4seg.checkpoint import config_sha256

    cfg = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    if rehash and "config_sha256" not in changes:
        cfg["config_sha256"] = config_sha256(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("section,change", [("image_size", 128), ("threshold", 0.9), ("mean", [0.0, 0.0, 0.0]),
                                            ("name", "cmunext")])
def test_an_edited_model_setting_is_refused(saved, section, change):
    """Issue 20, item 7: edits to config.json's model section loaded silently."""
    _, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"][section] = change
    _edit_config(folder, rehash=False, model=cfg["model"])
    with pytest.raises(CheckpointError, match="was changed after it was saved"):
        llm4seg.load_checkpoint(folder)


def test_a_format_1_checkpoint_without_a_config_digest_is_refused(saved):
    _, folder = saved
    _edit_config(folder, format_version=1, config_sha256=None)
    with pytest.raises(CheckpointError, match="format version 1") as info:
        llm4seg.load_checkpoint(folder)
    assert "re-train" in info.value.hint


@pytest.mark.parametrize("key", ["weights_sha256", "frozen_sha256", "config_sha256"])
def test_deleting_a_digest_does_not_switch_the_check_off(saved, key):
    _, folder = saved
    _edit_config(folder, **{key: None})
    with pytest.raises(CheckpointError, match=f"no valid {key}"):
        llm4seg.load_checkpoint(folder)


def test_string_format_version_is_a_clear_error(saved):
    _, folder = saved
    _edit_config(folder, format_version="1")
    with pytest.raises(CheckpointError, match="format_version '1'"):
        llm4seg.load_checkpoint(folder)


def test_corrupt_safetensors_with_a_matching_digest_is_a_checkpoint_error(saved):
    from llm4seg.fileio import file_sha256

    _, folder = saved
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json header")
    _edit_config(folder, weights_sha256=file_sha256(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not a valid safetensors file: its header is not JSON"):
        llm4seg.load_checkpoint(folder)


def test_a_safetensors_header_claiming_2_62_bytes_is_refused_before_reading(saved):
    """Issue 20: no loader allocates what a crafted header claims."""
    from llm4seg.fileio import file_sha256

    _, folder = saved
    path = folder / "model.safetensors"
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = [0, 1 << 62]
    blob = json.dumps(header).encode()
    path.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + n:])
    _edit_config(folder, weights_sha256=file_sha256(path))
    with pytest.raises(CheckpointError, match="claims bytes 0-4611686018427387904"):
        llm4seg.load_checkpoint(folder)


def test_checkpoint_files_are_readable_by_the_team(tmp_path):
    """Issue 19, item 13: safetensors created model.safetensors 0600; files get the umask's mode."""
    import os

    import llm4seg

    umask = os.umask(0)
    os.umask(umask)
    llm4seg.save_checkpoint(llm4seg.create_model("cmunext_s", image_size=32), tmp_path / "ckpt")
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "ckpt" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
