"""One owner of manifest.json (issue 23): every artifact kind is built, written, read back and
checked through runtime/core/manifest.py; adopt-engine adds entries through it too."""

from __future__ import annotations

import json

import pytest

from llm4seg.errors import ConfigError
from llm4seg.fileio import file_sha256
from llm4seg.runtime.core.entry import sealed
from llm4seg.runtime.core.manifest import MANIFEST_VERSION, add_entry, load_manifest, read_manifest, write_manifest
from llm4seg.runtime.core.manifest_build import build_manifest

MODEL = {"image_size": 64, "in_channels": 3, "num_classes": 1, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
         "name": "llm4seg", "block": {"layer": 2}, "threshold": 0.5}
KINDS = {"model.onnx": "fp32", "model.fp16.onnx": "fp16", "model.int8.onnx": "int8", "model.pt2": "fp32",
         "model.fp16.plan": "fp16", "model.fp16.rtx-sm89.plan": "fp16"}


def test_every_artifact_kind_round_trips(tmp_path):
    entries = {}
    for name, precision in KINDS.items():
        (tmp_path / name).write_bytes(name.encode() * 10)
        extra = {"sha256": file_sha256(tmp_path / name), "size_bytes": (tmp_path / name).stat().st_size}
        if name.endswith(".plan"):
            extra["engine"] = {"product": "TensorRT-RTX" if "rtx" in name else "TensorRT", "precision": precision}
        entries[name] = build_manifest(artifact=name, precision=precision, model_config=MODEL, checkpoint_sha256="c" * 64,
                                       opset=None if name.endswith((".pt2", ".plan")) else 17, batch_range=(1, 2, 8),
                                       folds={}, parity={"n": 4}, extra=extra)
    write_manifest(tmp_path, entries, {"engine_recipes": {}})
    whole = read_manifest(tmp_path)
    assert whole["manifest_version"] == MANIFEST_VERSION and set(whole["artifacts"]) == set(KINDS)
    for name in KINDS:
        assert dict(load_manifest(tmp_path / name).raw) == json.loads(json.dumps(sealed(entries[name])))  # built == read
    adopted = dict(entries["model.fp16.plan"], artifact="model.int8.plan", precision="int8")
    (tmp_path / "model.int8.plan").write_bytes(b"plan")
    adopted["sha256"] = file_sha256(tmp_path / "model.int8.plan")
    add_entry(tmp_path, "model.int8.plan", adopted)
    assert load_manifest(tmp_path / "model.int8.plan").precision == "int8"
    assert set(read_manifest(tmp_path)["artifacts"]) == set(KINDS) | {"model.int8.plan"}


def test_a_bad_entry_is_refused_on_write_and_on_read(tmp_path):
    entry = build_manifest(artifact="model.onnx", precision="fp32", model_config=MODEL, checkpoint_sha256="c",
                           opset=17, batch_range=(1, 1, 4), folds={}, extra={"sha256": "0" * 64})
    write_manifest(tmp_path, {"model.onnx": entry})
    with pytest.raises(ConfigError, match="threshold = 1.5"):
        add_entry(tmp_path, "model.x.onnx", dict(entry, threshold=1.5))
    bad = sealed(dict(entry, batch={"min": 0, "opt": 1, "max": 4}))  # sealed: the value check itself refuses it
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {"model.onnx": bad}}))
    with pytest.raises(ConfigError, match="batch"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[]")
    with pytest.raises(ConfigError, match="not an llm4seg manifest"):
        read_manifest(tmp_path)


def test_the_exports_own_manifest_reads_back_whole(exported):
    manifest = read_manifest(exported[0])
    for name in manifest["artifacts"]:
        assert load_manifest(exported[0] / name).artifact == name


EDITS = {  # issue 33, item 7: each loaded silently while the same edit to a checkpoint config was refused
    "mean and std swapped": lambda e: e["preprocess"].update(mean=e["preprocess"]["std"], std=e["preprocess"]["mean"]),
    "threshold": lambda e: e.update(threshold=0.3),
    "scale": lambda e: e["preprocess"].update(scale=1.0),
    "double scaling": lambda e: e["preprocess"].update(paper_double_scaling=not e["preprocess"]["paper_double_scaling"]),
    "a faked parity": lambda e: e.update(parity={"passed": True, "n": 10**6}),
    "a dropped field": lambda e: e.pop("folds"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_hand_edited_entry_is_refused_where_it_is_read(tmp_path, edit):
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    entry = build_manifest(artifact="model.onnx", precision="fp32", model_config=MODEL, checkpoint_sha256="c" * 64,
                           opset=17, batch_range=(1, 1, 4), folds={}, parity={"n": 4},
                           extra={"sha256": file_sha256(tmp_path / "model.onnx")})
    write_manifest(tmp_path, {"model.onnx": entry})
    load_manifest(tmp_path / "model.onnx")  # as written: accepted
    whole = json.loads((tmp_path / "manifest.json").read_text())
    EDITS[edit](whole["artifacts"]["model.onnx"])
    (tmp_path / "manifest.json").write_text(json.dumps(whole))
    for read in (lambda: load_manifest(tmp_path / "model.onnx"), lambda: read_manifest(tmp_path)):
        with pytest.raises(ConfigError, match="was changed after it was written"):
            read()
    del whole["artifacts"]["model.onnx"]["entry_sha256"]  # removing the digest is no way round it
    (tmp_path / "manifest.json").write_text(json.dumps(whole))
    with pytest.raises(ConfigError, match="lacks entry_sha256"):
        load_manifest(tmp_path / "model.onnx")


@pytest.mark.parametrize("quality", [{"low_confidence": 0}, {"low_confidence": 1.5}, {"n": 3}, "high"])
def test_a_bad_quality_calibration_is_refused(tmp_path, quality):
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    entry = build_manifest(artifact="model.onnx", precision="fp32", model_config=MODEL, checkpoint_sha256="c" * 64,
                           opset=17, batch_range=(1, 1, 4), folds={}, extra={"sha256": file_sha256(tmp_path / "model.onnx")})
    entry["quality"] = quality
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {"model.onnx": sealed(entry)}}))
    with pytest.raises(ConfigError, match="quality"):
        load_manifest(tmp_path / "model.onnx")


def _frames_export(tmp_path):
    """A written manifest with a float graph and its any-size frames graph (files stand in for graphs)."""
    entries = {}
    for name, frames in (("model.onnx", None), ("model.frames.onnx", {"form": "any-size", "input_color": "BGR",
                                                                        "source": "model.onnx"})):
        (tmp_path / name).write_bytes(name.encode())
        entries[name] = build_manifest(artifact=name, precision="fp32", model_config=MODEL, checkpoint_sha256="c" * 64,
                                       opset=17, batch_range=(1, 1, 4), folds={}, frames=frames,
                                       extra={"sha256": file_sha256(tmp_path / name)})
    write_manifest(tmp_path, entries)
    return json.loads((tmp_path / "manifest.json").read_text())


def _edit_frames_entry(tmp_path, whole):
    whole["artifacts"]["model.frames.onnx"]["frames"]["input_color"] = "RGB"  # a hand edit, seal left as it was
    (tmp_path / "manifest.json").write_text(json.dumps(whole))


def test_holoscans_gpu_config_reads_through_the_owner(tmp_path):
    """Issue 43, finding 4: inference_op_config parsed manifest.json itself, so the seal never ran."""
    from llm4seg.runtime.doors.holoscan import inference_op_config

    whole = _frames_export(tmp_path)
    config = inference_op_config(tmp_path / "manifest.json", "model.onnx")
    assert config["format_converter"]["out_channel_order"] == [2, 1, 0]  # BGR frames
    _edit_frames_entry(tmp_path, whole)
    with pytest.raises(ConfigError, match="was changed after it was written"):
        inference_op_config(tmp_path / "manifest.json", "model.onnx")


def test_checks_profile_reads_through_the_owner(tmp_path):
    """Issue 43, finding 4: `llm4seg check` parsed manifest.json itself and fell back to batch 1 on
    any problem: an edited entry gave a profile the export never gated."""
    from llm4seg.cli.check_cmd import _profile

    whole = _frames_export(tmp_path)
    whole["artifacts"]["model.frames.onnx"]["batch"]["max"] = 64
    (tmp_path / "manifest.json").write_text(json.dumps(whole))
    with pytest.raises(ConfigError, match="was changed after it was written"):
        _profile(tmp_path / "model.frames.onnx")


def test_deepstreams_config_reads_through_the_owner(tmp_path):
    from llm4seg.runtime.doors.deepstream import write_nvinfer_config

    whole = _frames_export(tmp_path)
    _edit_frames_entry(tmp_path, whole)
    with pytest.raises(ConfigError, match="was changed after it was written"):
        write_nvinfer_config(tmp_path)


@pytest.mark.parametrize("text, problem", [
    ('{"artifacts": {}, "artifacts": {"x": 1}}', "appears twice"),
    ('{"artifacts": {"model.onnx": {"threshold": NaN}}}', "NaN"),
    ('{"artifacts": {}} {}', "not valid JSON"),
])
def test_manifest_json_is_read_strictly(tmp_path, text, problem):
    """Issue 44: one strict reader: a repeated key (two parsers could read it differently), NaN or
    trailing data is refused, never resolved."""
    (tmp_path / "manifest.json").write_text(text)
    (tmp_path / "model.onnx").write_bytes(b"x")
    for read in (lambda: read_manifest(tmp_path), lambda: load_manifest(tmp_path / "model.onnx")):
        with pytest.raises(ConfigError, match=problem):
            read()


def test_the_typed_entry_carries_the_contract(tmp_path):
    _frames_export(tmp_path)
    entry = load_manifest(tmp_path / "model.frames.onnx")
    assert entry.contract.image_size == 64 and entry.contract.mean == (0.5, 0.5, 0.5)
    assert entry.frames.form == "any-size" and entry.input_color == "BGR" and entry.batch == (1, 1, 4)
    assert load_manifest(tmp_path / "model.onnx").input_color == "RGB"  # a float graph takes the model's colour
