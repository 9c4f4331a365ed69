"""Frames graphs (export/frames_graph.py): uint8 frames in, masks out, the contract inside. Each is
held to the Segmenter path (host contract + float graph), built by the real TensorRT-RTX builder,
and its gate must be able to fail."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from llm4seg.contract import FrameContract
from llm4seg.errors import ExportError
from llm4seg.metrics import image_metrics
from llm4seg.runtime.core.backends import load_backend
from llm4seg.runtime.core.manifest import artifact_sha256
from llm4seg.runtime.core.comparator import Comparator, probs_from_frames, tolerance_for
from llm4seg.runtime.core.segmenter import Segmenter

PRECISIONS = {"model.onnx": "fp32", "model.fp16.onnx": "fp16", "model.int8.onnx": "int8"}


def _colour_frames():
    """Colour uint8 BGR frames of several sizes whose channels differ (reduced, enlarged, mixed)."""
    rng = np.random.default_rng(3)
    frames = []
    for h, w in [(64, 64), (40, 52), (150, 210), (47, 130), (333, 61)]:
        base = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (9, 9), 3)
        cv2.circle(base, (w // 2, h // 2), max(3, min(h, w) // 4), (40, 90, 200), -1)
        frames.append(base)
    return frames


def test_the_shared_checkpoint_segments(exported):
    """The suite's checkpoint finds the synthetic lesions on any x86-64 (so agreement tests compare
    real masks): mask Dice vs truth on its held-out images, as the export measured it on model.onnx."""
    out, summary = exported
    parity = json.loads((out / "manifest.json").read_text())["artifacts"]["model.onnx"]["parity"]
    assert parity["masks_certified"] and parity["reference_foreground_frames"] >= parity["n"] // 2
    assert parity["reference_dice_vs_truth"] > 0.3  # 0.34 measured over all gate frames (tinted and reduced ones too)


@pytest.mark.parametrize("source", list(PRECISIONS))
def test_frames_graphs_match_the_segmenter_path(exported, source):
    """Colour frames of several sizes: the any-size frames graph gives the host-contract path's
    probabilities (float graph + Segmenter) within the FP32 bound, and identical masks but for
    pixels within 0.01 of the threshold; its 'mask' output is its 'prob' > threshold."""
    out, _ = exported
    frames = _colour_frames()
    host = Segmenter(out / source, layout="bgr").segment(frames, binary=False)
    name = source.replace(".onnx", ".frames.onnx")
    graph = Segmenter(out / name, layout="bgr")
    assert graph.entry.frames.form == "any-size" and graph.runner.kind == "graph"
    probs = graph.segment(frames, binary=False)
    masks = graph.segment(frames)
    for f, h, p, m in zip(frames, host, probs, masks):
        assert p.shape == m.shape == f.shape[:2]
        assert np.abs(h - p).max() < tolerance_for("fp32").max_abs
        near = np.abs(h - graph.threshold) < 0.01
        assert np.array_equal((h > graph.threshold)[~near], m.astype(bool)[~near])
    with load_backend(out / name) as backend:
        import onnxruntime as ort

        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        prob, mask = session.run(["prob", "mask"], {"frames": frames[2][None]})
        assert np.array_equal(mask, (prob > graph.threshold).astype(np.uint8)) and mask.dtype == np.uint8
        assert backend.entry.input.dtype == "uint8"


def test_model_size_form_takes_frames_at_the_models_size(exported):
    out, _ = exported
    frames = _colour_frames()
    seg = Segmenter(out / "model.frames64.onnx", layout="bgr")
    assert seg.entry.frames.form == "model-size"
    host = Segmenter(out / "model.onnx", layout="bgr").segment(frames, binary=False)
    for h, p in zip(host, seg.segment(frames, binary=False)):
        assert np.abs(h - p).max() < 1e-4  # the same host resize; only the in-graph normalisation differs


def test_manifest_names_the_forms_and_their_input_contract(exported):
    out, _ = exported
    entries = json.loads((out / "manifest.json").read_text())["artifacts"]
    for source, precision in PRECISIONS.items():
        for name, form in ((source.replace(".onnx", ".frames.onnx"), "any-size"),
                           (source.replace(".onnx", ".frames64.onnx"), "model-size")):
            e = entries[name]
            assert e["precision"] == precision and e["frames"]["form"] == form and e["frames"]["source"] == source
            assert e["inputs"][0] == {"name": "frames", "dtype": "uint8", "layout": "NHWC", "color": "BGR",
                                      "shape": ["batch", *(["height", "width"] if form == "any-size" else [64, 64]), 3]}
            assert [o["name"] for o in e["outputs"]] == ["prob", "mask"]
            assert e["tensorrt_rtx_build"]["ok"] and e["tensorrt_rtx_build"]["profile"][2][1:] == (
                [1080, 1920, 3] if form == "any-size" else [64, 64, 3])
            assert e["tensorrt_check"]["10.3"]["ok"], e["tensorrt_check"]["10.3"]["findings"]
            assert e["parity"]["gate"]["mean_abs_err_max"] == tolerance_for(precision).mean_abs


def test_a_frames_graph_with_the_wrong_contract_fails_its_gate(exported, tmp_path):
    """A frames graph built with another resize rule (linear both ways) or another colour order
    fails the gate that certifies frames graphs (enlarged, reduced and tinted frames)."""
    from llm4seg.export.frames_graph import frames_graph_from_onnx
    from llm4seg.export.heldout import gate_frames

    out, _ = exported
    entry = json.loads((out / "manifest.json").read_text())["artifacts"]["model.frames.onnx"]
    contract = FrameContract.from_manifest(entry)
    rng = np.random.default_rng(0)
    images = np.stack([cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (5, 5), 2) for _ in range(4)])
    frames, _ = gate_frames(images, np.zeros((4, 64, 64), bool), [None] * 4)
    frames = [cv2.resize(f, (f.shape[1] * 3, f.shape[0] * 3)) if i % 3 == 0 else f for i, f in enumerate(frames)]
    with load_backend(out / "model.frames.onnx") as good:
        reference = probs_from_frames(good, frames)
    comparator = Comparator(frames, reference, contract.threshold)
    for label, wrong, colour in (("resize", replace(contract, resize_down="linear"), "BGR"),
                                 ("colour", contract, "RGB")):
        path = tmp_path / f"{label}.frames.onnx"
        frames_graph_from_onnx(out / "model.onnx", path, wrong, "any-size", input_color=colour)
        bad = dict(entry, artifact=path.name, sha256=artifact_sha256(path))
        with pytest.raises(ExportError, match="fails its gate"):
            comparator.check(load_backend(path, manifest=bad), tolerance_for("fp32"), what=label)


def test_frames_graph_segments_like_the_checkpoint_on_truth(exported):
    """Dice vs truth through the frames graph equals Dice through the Segmenter path on the same frames."""
    out, _ = exported
    frames = _colour_frames()
    truth = [np.linalg.norm(f.astype(int) - (40, 90, 200), axis=2) < 30 for f in frames]
    dice = {name: np.mean([image_metrics(m.astype(bool), t)["dice"] for m, t in
                           zip(Segmenter(out / name, layout="bgr").segment(frames), truth)])
            for name in ("model.onnx", "model.frames.onnx")}
    assert abs(dice["model.onnx"] - dice["model.frames.onnx"]) < 0.01
