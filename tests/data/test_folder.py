"""Folder datasets: matching by stem, binarised masks, splits, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from llm4seg.data.datasets import default_val_split, load_dataset, train_val_datasets
from llm4seg.errors import DataError



def make_folder(root: Path, n: int = 6, size=(40, 30), mask_ext=".png", grey=False) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (size[1], size[0]) if grey else (size[1], size[0], 3), dtype=np.uint8)
        mask = np.zeros((size[1], size[0]), np.uint8)
        mask[5:20, 5:25] = 255
        cv2.imwrite(str(root / "images" / f"case {i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"case {i}{mask_ext}"), mask)
    return root


def test_loads_and_resizes(tmp_path):
    ds = load_dataset(str(make_folder(tmp_path / "d", grey=True)), None, 32)
    assert ds.images.shape == (6, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.masks.shape == (6, 32, 32) and ds.masks.dtype == bool and ds.masks.any()
    assert ds.stems[0] == "case 0"


def test_jpeg_masks_are_binarised_at_127(tmp_path):
    root = make_folder(tmp_path / "d", mask_ext=".jpg")
    ds = load_dataset(str(root), None, 40)
    assert set(np.unique(ds.masks)) == {False, True}
    # JPEG ringing gives values like 3 or 250: the fraction must stay that of the drawn box.
    assert abs(ds.masks.mean() - (15 * 20) / (40 * 30)) < 0.05


def test_problems_are_listed_together(tmp_path):
    root = make_folder(tmp_path / "d")
    (root / "masks" / "case 1.png").unlink()
    cv2.imwrite(str(root / "masks" / "case 2.png"), np.zeros((10, 10), np.uint8))
    (root / "images" / "case 3.png").write_bytes(b"not an image")
    with pytest.raises(DataError) as info:
        load_dataset(str(root), None, 32)
    text = str(info.value)
    assert "case 1: no mask" in text and "--skip-bad" in info.value.hint
    ds = load_dataset(str(root), None, 32, skip_bad=True)
    assert set(ds.skipped) == {"case 1", "case 2", "case 3"}
    assert "40x30 but mask is 10x10" in ds.skipped["case 2"] and "unreadable image" in ds.skipped["case 3"]
    assert len(ds) == 3


def test_unreadable_and_mismatched_without_skip(tmp_path):
    root = make_folder(tmp_path / "d")
    cv2.imwrite(str(root / "masks" / "case 2.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match="case 2: image is 40x30 but mask is 10x10"):
        load_dataset(str(root), None, 32)


def test_split_with_unknown_stems(tmp_path):
    root = make_folder(tmp_path / "d")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("case 0\ncase 1\nghost\n")
    with pytest.raises(DataError, match="ghost: listed in split 'train'"):
        load_dataset(str(root), "train", 32)
    with pytest.raises(DataError, match="split 'nope' not found") as info:
        load_dataset(str(root), "nope", 32)
    assert "train" in info.value.hint


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "e" / "images").mkdir(parents=True)
    (tmp_path / "e" / "masks").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(str(tmp_path / "e"), None, 32)
    with pytest.raises(DataError, match="has no masks/ folder"):
        (tmp_path / "f" / "images").mkdir(parents=True)
        load_dataset(str(tmp_path / "f"), None, 32)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nothing"), None, 32)


def test_seeded_split_and_derived_val_split(tmp_path):
    root = make_folder(tmp_path / "d", n=10)
    a_train, a_val = train_val_datasets(str(root), None, None, 32, seed=3)
    b_train, b_val = train_val_datasets(str(root), None, None, 32, seed=3)
    assert a_val.stems == b_val.stems and len(a_val) == 2 and not set(a_val.stems) & set(a_train.stems)
    (root / "splits").mkdir()
    (root / "splits" / "train1.txt").write_text("case 0\ncase 1\n")
    (root / "splits" / "val1.txt").write_text("case 2\n")
    assert default_val_split(root, "train1") == "val1"
    train, val = train_val_datasets(str(root), "train1", None, 32)
    assert val.stems == ["case 2"] and train.stems == ["case 0", "case 1"]


def test_synthetic_default_is_reproducible():
    a = load_dataset(None, None, 32, synthetic_count=4)
    b = load_dataset(None, None, 32, synthetic_count=4)
    assert np.array_equal(a.images, b.images) and a.masks.any() and len(a) == 4


def test_busi_published_splits_scan_cleanly():
    from llm4seg.data.folder import scan_folder
    from tests.conftest import dataset_or_skip

    busi = dataset_or_skip("busi")
    for k in (1, 2, 3):
        assert len(scan_folder(busi, f"train{k}").pairs) == 452
        assert len(scan_folder(busi, f"val{k}").pairs) == 195


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    """Issue 20, item 12: a small PNG declaring 30000 x 30000 was decoded in full (64 s, 5.2 GB)."""
    import time
    import zlib

    from llm4seg.data.decode import MAX_IMAGE_PIXELS, declared_size, read_image_rgb

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    w = h = 30000
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])  # 8-bit grey
    rows = zlib.compress(b"\x00" * (w + 1) * 64, 9)  # only the first rows: the header is what matters
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    t0 = time.perf_counter()
    image, reason = read_image_rgb(path)
    assert image is None and "declares 30000 x 30000" in reason and time.perf_counter() - t0 < 2
    assert w * h > MAX_IMAGE_PIXELS
    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.zeros((40, 70, 3), np.uint8))
    ok2, bmp = cv2.imencode(".bmp", np.zeros((40, 70, 3), np.uint8))
    assert declared_size(jpeg.tobytes()) == (70, 40) and declared_size(bmp.tobytes()) == (70, 40)


def test_a_huge_frame_is_refused_before_any_resize(exported):
    from llm4seg.errors import InputSpecError
    from llm4seg.runtime import Segmenter

    frame = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), (20000, 20000, 3), (0, 0, 1))  # no memory
    with Segmenter(exported[0] / "model.onnx") as seg:
        with pytest.raises(InputSpecError, match="above the"):
            seg.segment_one(frame)
