"""The frame contract (llm4seg.contract): one rule that training's loader, the Segmenter and the
manifest read, checked against its own definition (`axis_weights`) on reduced, enlarged and
mixed frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from llm4seg.contract import FrameContract, axis_weights, resize_square
from llm4seg.data.datasets import load_dataset
from llm4seg.errors import InputSpecError
from llm4seg.models.config import IMAGENET_MEAN, IMAGENET_STD

CONTRACT = FrameContract(image_size=64, mean=IMAGENET_MEAN, std=IMAGENET_STD)
# (H, W): reduced on both axes, enlarged on both, mixed, one axis equal, integer and odd factors.
SIZES = [(40, 50), (200, 300), (37, 150), (150, 37), (64, 90), (128, 128), (641, 63)]


def _smooth_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (7, 7), 2)


@pytest.mark.parametrize("h,w", SIZES)
def test_resize_follows_its_definition_on_every_axis(h, w):
    """OpenCV's per-axis resize equals the weight matrices of the rule (float64) before rounding:
    the largest difference is float32 summation (about 3e-5 of a grey level); after rounding at
    most one grey level where the exact value sits on a .5 boundary."""
    frame = _smooth_frame(h, w)
    wy = axis_weights(h, 64, "area" if h > 64 else "linear")
    wx = axis_weights(w, 64, "area" if w > 64 else "linear")
    exact = np.einsum("ij,jkc,lk->ilc", wy, frame.astype(np.float64), wx)
    got = resize_square(frame, 64).astype(np.float64)
    assert np.abs(got - exact).max() <= 0.5 + 1e-3
    assert np.mean(got != np.clip(np.rint(exact), 0, 255)) < 1e-3


def test_the_rule_is_area_down_and_linear_up_not_area_both_ways():
    """An enlarged frame is resized with the linear rule: OpenCV's INTER_AREA when enlarging (what
    training used before the contract) differs from it on most pixels."""
    frame = _smooth_frame(40, 40)
    linear = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_LINEAR)
    area = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
    ours = resize_square(frame, 64)
    assert np.abs(ours.astype(int) - linear).max() <= 1
    assert np.mean(ours != area) > 0.5


def test_training_and_the_segmenter_resize_alike(tmp_path, exported):
    """A dataset with reduced, enlarged and mixed images: the training loader's resized images are
    exactly the contract's, and the Segmenter's input tensor is exactly their normalisation."""
    from llm4seg.runtime.core.segmenter import Segmenter

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    frames = {}
    for k, (h, w) in enumerate(SIZES):
        frames[f"f{k}"] = _smooth_frame(h, w, k)
        cv2.imwrite(str(tmp_path / "images" / f"f{k}.png"), frames[f"f{k}"][:, :, ::-1])  # stored as RGB images
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: h // 2, w // 4: w // 2] = 255
        cv2.imwrite(str(tmp_path / "masks" / f"f{k}.png"), mask)
    data = load_dataset(str(tmp_path), None, 64)
    seg = Segmenter(exported[0] / "model.onnx", layout="rgb")
    for stem, image in zip(data.stems, data.images):
        assert np.array_equal(image, resize_square(frames[stem], 64)), stem
        assert np.array_equal(seg.runner.tensor(seg.runner.rgb(frames[stem])), seg.contract.normalise(image)), stem


def test_manifest_round_trip_and_refusals():
    entry = {"image_size": 64, "threshold": 0.4, "preprocess": CONTRACT.to_manifest(),
             "inputs": [{"color": "RGB", "layout": "NCHW"}]}
    assert FrameContract.from_manifest(entry) == FrameContract(64, IMAGENET_MEAN, IMAGENET_STD, threshold=0.4)
    entry["preprocess"]["resize"]["up"] = "lanczos"
    with pytest.raises(InputSpecError, match="resize.up='lanczos'"):
        FrameContract.from_manifest(entry)
    with pytest.raises(InputSpecError, match="std"):
        FrameContract(64, IMAGENET_MEAN, (0.2, 0.0, 0.2))


def test_affine_is_the_normalisation_and_the_paper_quirk():
    a, b = CONTRACT.affine()
    x = np.arange(256, dtype=np.float32)[:, None]
    expected = (x / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    assert np.abs(x * a + b - expected).max() < 1e-5
    double = FrameContract(64, IMAGENET_MEAN, IMAGENET_STD, paper_double_scaling=True)
    assert np.abs((x * double.affine()[0] + double.affine()[1]) * 255 - expected).max() < 1e-5
