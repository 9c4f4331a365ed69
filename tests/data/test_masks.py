"""Mask encodings detected per dataset, and bad files named (issue 9: items 1, 3, 4, BOM)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from llm4seg.data.datasets import load_dataset
from llm4seg.errors import DataError

BOX = (slice(5, 20), slice(5, 25))
BOX_FRACTION = (15 * 20) / (40 * 30)


def folder_with_masks(root: Path, values, dtype=np.uint8, ext=".png", n=4) -> Path:
    """n image/mask pairs; mask i has `values[i % len(values)]` inside a box, 0 elsewhere."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"c{i}.png"), rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
        mask = np.zeros((30, 40), dtype)
        mask[BOX] = values[i % len(values)]
        cv2.imwrite(str(root / "masks" / f"c{i}{ext}"), mask)
    return root


@pytest.mark.parametrize("value,dtype", [(1, np.uint8), (100, np.uint8), (255, np.uint8),
                                         (1, np.uint16), (4095, np.uint16), (65535, np.uint16)])
def test_binary_encodings_keep_the_foreground(tmp_path, value, dtype):
    ds = load_dataset(str(folder_with_masks(tmp_path / "d", [value], dtype)), None, 40)
    assert ds.masks.mean() == pytest.approx(BOX_FRACTION, abs=0.01)
    assert ds.mask_encoding["kind"] == "binary" and ds.mask_encoding["values"] == [value]
    assert "value > 0" in ds.mask_encoding["rule"]


def palette_folder(root: Path, palette: list[int]) -> Path:
    """4 pairs whose masks are palette PNGs: index 1 inside the box, 0 elsewhere."""
    root = folder_with_masks(root, [0])
    for i in range(4):
        index = np.zeros((30, 40), np.uint8)
        index[BOX] = 1
        img = Image.fromarray(index, mode="P")
        img.putpalette(palette + [0] * (768 - len(palette)))
        img.save(root / "masks" / f"c{i}.png")
    return root


def test_palette_png_masks(tmp_path):
    root = palette_folder(tmp_path / "d", [0, 0, 0, 200, 30, 30])  # index 1 = dark red: grey value < 127
    ds = load_dataset(str(root), None, 40)
    assert ds.masks.mean() == pytest.approx(BOX_FRACTION, abs=0.01)


def test_lossy_jpeg_masks_use_the_midpoint(tmp_path):
    ds = load_dataset(str(folder_with_masks(tmp_path / "d", [255], ext=".jpg")), None, 40)
    assert ds.mask_encoding["kind"] == "lossy" and ds.mask_encoding["threshold"] == 127
    assert ds.masks.mean() == pytest.approx(BOX_FRACTION, abs=0.05)


def test_lossy_16_bit_masks_use_their_midpoint(tmp_path):
    root = folder_with_masks(tmp_path / "d", [65535], np.uint16)
    for i in range(4):  # near-0 and near-65535 noise, as a lossy 16-bit encoder would leave
        mask = cv2.imread(str(root / "masks" / f"c{i}.png"), cv2.IMREAD_UNCHANGED)
        mask[0, : 10 + i] = np.arange(30, 40 + i)  # many distinct values, as lossy coding leaves
        mask[BOX][0, : 10 + i] = np.arange(65000, 65010 + i)
        cv2.imwrite(str(root / "masks" / f"c{i}.png"), mask)
    ds = load_dataset(str(root), None, 40)
    assert ds.mask_encoding["kind"] == "lossy" and ds.mask_encoding["threshold"] == 32767
    assert ds.masks.mean() == pytest.approx(BOX_FRACTION, abs=0.01)


def test_multiclass_labels_are_refused_with_their_values(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(str(folder_with_masks(tmp_path / "d", [1, 2])), None, 40)
    assert "1: " in info.value.message and "2: " in info.value.message and "fit no binary" in info.value.message
    assert "multi-class" in info.value.hint


def test_mixed_encodings_are_refused(tmp_path):
    root = folder_with_masks(tmp_path / "d", [1, 255], ext=".png")
    jpeg_noise = cv2.imread(str(root / "masks" / "c1.png"), cv2.IMREAD_GRAYSCALE)
    jpeg_noise[0, :8] = [2, 3, 4, 5, 6, 250, 251, 252]  # JPEG-like noise so the set looks lossy
    cv2.imwrite(str(root / "masks" / "c1.png"), jpeg_noise)
    with pytest.raises(DataError, match="mix encodings"):
        load_dataset(str(root), None, 40)


def test_all_empty_masks_are_an_error_not_a_perfect_score(tmp_path):
    with pytest.raises(DataError, match="every mask .* is empty"):
        load_dataset(str(folder_with_masks(tmp_path / "d", [0])), None, 40)


def test_truncated_jpeg_is_named(tmp_path):
    root = folder_with_masks(tmp_path / "d", [255])
    ok, jpg = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    (root / "images" / "c1.png").unlink()
    (root / "images" / "c1.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])
    with pytest.raises(DataError) as info:
        load_dataset(str(root), None, 40)
    assert "c1: unreadable image file (c1.jpg: truncated JPEG" in info.value.message
    assert len(load_dataset(str(root), None, 40, skip_bad=True)) == 3


def test_truncated_png_is_named(tmp_path):
    root = folder_with_masks(tmp_path / "d", [255])
    data = (root / "masks" / "c2.png").read_bytes()
    (root / "masks" / "c2.png").write_bytes(data[:-20])
    with pytest.raises(DataError, match="c2.png: truncated PNG"):
        load_dataset(str(root), None, 40)


def test_same_stem_twice_is_refused_with_both_names(tmp_path):
    root = folder_with_masks(tmp_path / "d", [255])
    cv2.imwrite(str(root / "images" / "c0.jpg"), np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(DataError) as info:
        load_dataset(str(root), None, 40)
    assert "'c0.jpg'" in info.value.message and "'c0.png'" in info.value.message


def test_split_file_with_a_bom(tmp_path):
    root = folder_with_masks(tmp_path / "d", [255])
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("c0\nc2\n", encoding="utf-8-sig")
    assert load_dataset(str(root), "train", 40).stems == ["c0", "c2"]


def test_palette_masks_are_read_by_index_even_when_index_0_is_white(tmp_path):
    """Issue 20, item 5: binarised by the palette colour's grey value, a white index 0 inverted every mask."""
    root = palette_folder(tmp_path / "d", [255, 255, 255, 0, 0, 0])  # index 0 white, index 1 black
    ds = load_dataset(str(root), None, 40)
    assert ds.masks.mean() == pytest.approx(BOX_FRACTION, abs=0.01) and ds.mask_encoding["values"] == [1]


def test_a_small_0_1_lesion_among_lossy_0_255_masks_is_refused(tmp_path):
    """Issue 20, item 6: masks under 1 % of the mean size escaped the mixed-encoding check."""
    root = folder_with_masks(tmp_path / "d", [255], n=6)
    for i in range(5):
        mask = cv2.imread(str(root / "masks" / f"c{i}.png"), cv2.IMREAD_GRAYSCALE)
        mask[0, :8] = [2, 3, 4, 5, 6, 250, 251, 252]  # lossy-looking values
        cv2.imwrite(str(root / "masks" / f"c{i}.png"), mask)
    lesion = np.zeros((30, 40), np.uint8)
    lesion[10:12, 10:12] = 1  # 4 pixels, a 0/1 label
    cv2.imwrite(str(root / "masks" / "c5.png"), lesion)
    with pytest.raises(DataError, match="mix encodings") as info:
        load_dataset(str(root), None, 40)
    assert "c5" in info.value.message


def test_two_class_masks_with_high_values_are_not_taken_as_lossy(tmp_path):
    """Issue 20, item 6: 0/200/255 was merged as 'lossy'."""
    with pytest.raises(DataError, match="fit no binary encoding") as info:
        load_dataset(str(folder_with_masks(tmp_path / "d", [200, 255])), None, 40)
    assert "200: " in info.value.message and "255: " in info.value.message


def test_a_jpeg_corrupted_in_the_middle_is_named(tmp_path):
    """Issue 20, item 8: with its end marker intact it decoded to garbage, libjpeg's stderr line naming no file."""
    root = folder_with_masks(tmp_path / "d", [255], n=4)
    ok, buf = cv2.imencode(".jpg", (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8))
    data = bytearray(buf.tobytes())
    sos = data.find(b"\xff\xda")
    for i in range(sos + 200, sos + 260):
        data[i] = 0xFF if i % 7 == 0 else data[i] ^ 0x5A
    (root / "images" / "c2.png").unlink()
    (root / "images" / "c2.jpg").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"c2\.jpg: corrupt JPEG data"):
        load_dataset(str(root), None, 40)


def test_16_bit_training_images_are_refused_not_scaled_by_a_guess(tmp_path):
    """Issue 20, item 8: 16-bit images holding 12-bit data were scaled as full range."""
    root = folder_with_masks(tmp_path / "d", [255], n=4)
    cv2.imwrite(str(root / "images" / "c1.png"), np.full((30, 40), 3000, np.uint16))  # 12-bit data
    with pytest.raises(DataError, match="c1.png stores 16-bit samples"):
        load_dataset(str(root), None, 40)
