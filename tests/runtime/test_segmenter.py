"""Segmenter on odd sizes and layouts, with parity against the checkpoint's own prediction."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import llm4seg
from llm4seg.errors import InputSpecError, Llm4SegError
from llm4seg.data.synthetic import synthetic_dataset
from llm4seg.runtime import Segmenter, overlay
from tests.conftest import graph_with_external_data, write_sealed


@pytest.fixture(scope="module")
def frames():
    images, masks, _ = synthetic_dataset(3, 64, seed=9)
    return images  # RGB uint8 at the model size


def checkpoint_probs(ckpt, rgb64):
    model = llm4seg.load_checkpoint(ckpt)
    cfg = model.config
    x = (rgb64.astype(np.float32) / 255 - np.array(cfg.mean, np.float32)) / np.array(cfg.std, np.float32)
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))).numpy()[:, 0]


def test_parity_with_checkpoint_at_model_size(exported, trained_checkpoint, frames):
    expected = checkpoint_probs(trained_checkpoint, frames)
    with Segmenter(exported[0] / "model.onnx", layout="rgb") as seg:
        probs = seg.segment(list(frames), binary=False)
    assert np.abs(np.stack(probs) - expected).max() < 1e-4


@pytest.mark.parametrize("shape_hw", [(97, 131), (240, 320), (31, 45)])
def test_odd_sizes_and_layouts_return_frame_sized_masks(exported, frames, shape_hw):
    h, w = shape_hw
    rgb = cv2.resize(frames[0], (w, h), interpolation=cv2.INTER_LINEAR)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    with Segmenter(exported[0] / "model.onnx") as seg:
        m_bgr = seg.segment_one(bgr)
        seg.layout = "rgb"
        m_rgb = seg.segment_one(rgb)
        m_grey = seg.segment_one(grey)
        m_float = seg.segment_one(rgb.astype(np.float32) / 255)
    assert m_bgr.shape == (h, w) and m_bgr.dtype == np.uint8 and set(np.unique(m_bgr)) <= {0, 1}
    assert np.array_equal(m_bgr, m_rgb) and np.array_equal(m_rgb, m_float)
    assert m_grey.shape == (h, w)


def test_batches_larger_than_the_artifact_range_are_chunked(exported, frames, tmp_path):
    import json

    manifest = json.loads((exported[0] / "manifest.json").read_text())
    entry = dict(manifest["artifacts"]["model.onnx"], batch={"min": 1, "opt": 1, "max": 2})
    (tmp_path / "model.onnx").write_bytes((exported[0] / "model.onnx").read_bytes())
    write_sealed(tmp_path, {"artifacts": {"model.onnx": entry}})
    calls = []
    with Segmenter(tmp_path / "model.onnx", layout="rgb") as seg:
        infer = seg.backend.infer
        seg.backend.infer = lambda x: calls.append(len(x)) or infer(x)
        masks = seg.segment([frames[i % 3] for i in range(5)])
    assert len(masks) == 5 and np.array_equal(masks[0], masks[3]) and calls == [2, 2, 1]


def test_bad_frames_are_explained(exported):
    with Segmenter(exported[0] / "model.onnx") as seg:
        with pytest.raises(InputSpecError, match="dtype int32"):
            seg.segment_one(np.zeros((10, 10, 3), np.int32))
        with pytest.raises(InputSpecError, match="has 2 channels"):
            seg.segment_one(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(InputSpecError, match="layout 'yuv'"):
        Segmenter(exported[0] / "model.onnx", layout="yuv")


def test_overlay_modes():
    frame = np.zeros((20, 20, 3), np.uint8)
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 1
    contour = overlay(frame, mask, "contour", color=(0, 255, 0), thickness=1)
    fill = overlay(frame, mask, "fill", color=(0, 0, 200), alpha=0.5)
    assert contour[5, 5, 1] == 255 and contour[10, 10].sum() == 0 and contour[0, 0].sum() == 0
    assert fill[10, 10, 2] == 100 and fill[0, 0].sum() == 0


def test_uint16_frames_need_their_bit_depth(exported):
    from llm4seg.errors import InputSpecError

    out, _ = exported
    rng = np.random.default_rng(3)
    frame8 = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    frame12 = ((frame8.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)  # the same picture as 12-bit data
    with Segmenter(out / "model.onnx") as seg:
        with pytest.raises(InputSpecError, match="needs its bit depth") as info:
            seg.segment_one(frame12)
        assert "bit_depth=12" in info.value.hint
    with Segmenter(out / "model.onnx", bit_depth=12) as seg12, Segmenter(out / "model.onnx") as seg8:
        seen12, seen8 = (s.runner.tensor(s.runner.rgb(f)) for s, f in ((seg12, frame12), (seg8, frame8)))
        assert np.abs(seen12 - seen8).max() < 0.05  # not near-black
        with pytest.raises(InputSpecError, match="above 4095"):
            seg12.segment_one(frame12 * 16)


@pytest.mark.parametrize("frame, message", [
    (np.zeros((0, 0, 3), np.uint8), "the frame is empty"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN or infinite"),
    (np.full((8, 8, 3), 2.0, np.float32), "values in \\[0, 1\\]"),
])
def test_bad_frames_get_clear_errors(exported, frame, message):
    from llm4seg.errors import InputSpecError

    with Segmenter(exported[0] / "model.onnx") as seg:
        with pytest.raises(InputSpecError, match=message):
            seg.segment_one(frame)


def test_preprocessing_follows_the_manifest(exported, tmp_path):
    import json


    out, _ = exported
    frame = np.random.default_rng(4).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    manifest = json.loads((out / "manifest.json").read_text())
    (tmp_path / "model.onnx").write_bytes((out / "model.onnx").read_bytes())

    def with_entry(**changes):
        entry = json.loads(json.dumps(manifest["artifacts"]["model.onnx"]))
        for path, value in changes.items():
            node = entry
            *parents, leaf = path.split(".")
            for p in parents:
                node = node[int(p)] if p.isdigit() else node[p]
            node[leaf] = value
        write_sealed(tmp_path, {"artifacts": {"model.onnx": entry}})
        runner = Segmenter(tmp_path / "model.onnx").runner
        return lambda f: runner.tensor(runner.rgb(f))  # what the model is fed for frame f

    base = with_entry()(frame)
    assert np.allclose(with_entry(**{"inputs.0.color": "BGR"})(frame), with_entry()(frame[:, :, ::-1]))
    assert not np.allclose(with_entry(**{"preprocess.resize.down": "nearest"})(frame), base)
    half = with_entry(**{"preprocess.scale": 1 / 510.0})(frame)
    pre = manifest["artifacts"]["model.onnx"]["preprocess"]
    mean, std = (np.array(pre[k], np.float32)[:, None, None] for k in ("mean", "std"))
    assert np.allclose(base * std + mean, 2 * (half * std + mean), atol=1e-5)  # pixels * scale, then normalised
    with pytest.raises(Llm4SegError, match="YUV"):
        with_entry(**{"inputs.0.color": "YUV"})


def test_an_artifact_changed_in_place_with_size_and_mtime_kept_is_hashed_again(exported, tmp_path):
    """Issue 20, item 3: the digest cache was keyed on (path, size, mtime) only."""
    import os
    import shutil

    from llm4seg.errors import ConfigError
    from llm4seg.runtime.core.manifest import artifact_sha256, load_manifest, verify_artifact

    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    path = art / "model.onnx"
    entry = load_manifest(path)
    verify_artifact(path, entry)  # hashed and cached
    stat = os.stat(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size
    with open(path, "r+b") as f:  # in place: same inode
        f.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime put back
    assert os.stat(path).st_size == stat.st_size and os.stat(path).st_mtime_ns == stat.st_mtime_ns
    assert artifact_sha256(path) != entry.sha256
    with pytest.raises(ConfigError, match="does not match the sha256"):
        verify_artifact(path, entry)


@pytest.mark.parametrize("field,value", [("std", [0.0, 0.2, 0.2]), ("threshold", float("nan")), ("threshold", 2.0),
                                         ("mean", None), ("mean", [0.5]), ("batch_max", 0)])
def test_manifest_values_that_would_give_nonsense_are_refused(exported, tmp_path, field, value):
    """Issue 20, item 9: std 0 / threshold NaN or 2.0 ran and gave NaN or empty masks."""
    import json
    import shutil

    from llm4seg.errors import ConfigError

    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    manifest = json.loads((art / "manifest.json").read_text())
    entry = manifest["artifacts"]["model.onnx"]
    if field in ("std", "mean"):
        entry["preprocess"][field] = value
    elif field == "batch_max":
        entry["batch"]["max"] = value
    else:
        entry[field] = value
    (art / "manifest.json").write_text(json.dumps(manifest))  # NaN is written as NaN: the strict reader refuses it
    name = "NaN" if value != value else "batch" if field == "batch_max" else field
    with pytest.raises(ConfigError, match=name) as info:
        Segmenter(art / "model.onnx").segment_one(np.zeros((64, 64, 3), np.uint8))
    assert "re-run `llm4seg export`" in info.value.hint


@pytest.mark.parametrize("call,fragment", [
    (lambda seg: seg.segment(None), "takes a frame"),
    (lambda seg: seg.segment(5), "takes a frame"),
    (lambda seg: seg.segment_one(np.zeros((3, 64, 4), np.uint8)), "looks channel-first"),
    (lambda seg: seg.segment_one(np.zeros((3, 40, 60), np.uint8)), "looks channel-first"),
])
def test_segmenter_refuses_calls_that_are_not_frames(exported, call, fragment):
    """Issue 20, item 16: raw TypeErrors, and a (3, H, 4) CHW frame silently taken as BGRA."""
    with Segmenter(exported[0] / "model.onnx") as seg:
        with pytest.raises(InputSpecError, match=fragment):
            call(seg)


def test_segmenter_refuses_a_bad_bit_depth_and_colour_frames_for_gray(exported):
    for bad in ("12", 12.0, 0, 32, True):
        with pytest.raises(InputSpecError, match="bit_depth"):
            Segmenter(exported[0] / "model.onnx", bit_depth=bad)
    with Segmenter(exported[0] / "model.onnx", layout="gray") as seg:
        assert seg.segment_one(np.zeros((50, 60), np.uint8)).shape == (50, 60)
        with pytest.raises(InputSpecError, match="layout 'gray'"):
            seg.segment_one(np.zeros((50, 60, 3), np.uint8))


def test_an_onnx_artifact_reaching_outside_its_folder_is_refused(exported, tmp_path):
    """Issue 20: no public loader reads what a crafted file points at (external data outside the folder)."""
    import json
    import shutil

    import onnx

    from llm4seg.errors import Llm4SegError
    from llm4seg.runtime.core.manifest import artifact_sha256

    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    onnx.save(graph_with_external_data("../../../../etc/passwd"), str(art / "model.onnx"))
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["artifacts"]["model.onnx"]["sha256"] = artifact_sha256(art / "model.onnx")
    write_sealed(art, manifest)
    with pytest.raises(Llm4SegError, match="onnxruntime cannot load"):
        Segmenter(art / "model.onnx").segment_one(np.zeros((64, 64, 3), np.uint8))
