"""benchmarks/gpu/device_dataset.py: a packed-and-unpacked folder loads to the same training arrays."""

from __future__ import annotations

import shutil

import numpy as np

from llm4seg.data.datasets import load_dataset
from tests.benchmarks import load_script


def folder_with_splits(synthetic_folder, tmp_path, n_train: int, n_val: int):
    """A copy of the synthetic folder with train1/val1 split files over its first stems."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_folder, data)
    stems = sorted(p.stem for p in (data / "images").iterdir())
    (data / "splits").mkdir()
    (data / "splits" / "train1.txt").write_text("\n".join(stems[:n_train]) + "\n")
    (data / "splits" / "val1.txt").write_text("\n".join(stems[n_train:n_train + n_val]) + "\n")
    return data


def test_pack_then_unpack_gives_the_same_training_data(synthetic_folder, tmp_path):
    data = folder_with_splits(synthetic_folder, tmp_path, 14, 6)  # 4 stems in no split: left out
    dd = load_script("device_dataset")
    dd.pack(data, 64, tmp_path / "d.npz")
    dd.unpack(tmp_path / "d.npz", tmp_path / "unpacked")
    assert len(list((tmp_path / "unpacked" / "images").iterdir())) == 20
    for split in ("train1", "val1"):
        a, b = load_dataset(str(data), split, 64), load_dataset(str(tmp_path / "unpacked"), split, 64)
        assert a.stems == b.stems and np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)


def test_jpeg_pack_keeps_masks_exact_and_images_close(synthetic_folder, tmp_path):
    """--jpeg-quality (colour sets too large as PNG): masks bit-exact, images within JPEG error."""
    dd = load_script("device_dataset")
    dd.pack(synthetic_folder, 64, tmp_path / "d.npz", jpeg_quality=95)
    dd.pack(synthetic_folder, 64, tmp_path / "png.npz")
    assert (tmp_path / "d.npz").stat().st_size < (tmp_path / "png.npz").stat().st_size
    dd.unpack(tmp_path / "d.npz", tmp_path / "unpacked")
    a, b = load_dataset(str(synthetic_folder), None, 64), load_dataset(str(tmp_path / "unpacked"), None, 64)
    assert a.stems == b.stems and np.array_equal(a.masks, b.masks)
    error = np.abs(a.images.astype(np.int16) - b.images.astype(np.int16))
    assert 0 < error.mean() < 3  # lossy, but only just
    assert str(np.load(tmp_path / "d.npz")["image_codec"]) == "jpeg q95"


def test_split_arrays_read_one_split_as_training_arrays(synthetic_folder, tmp_path):
    """The GPU scripts read a split straight from the pack: the arrays training builds from the folder."""
    data = folder_with_splits(synthetic_folder, tmp_path, 10, 5)
    dd = load_script("device_dataset")
    dd.pack(data, 64, tmp_path / "d.npz")
    for split in ("train1", "val1"):
        images, masks = dd.split_arrays(tmp_path / "d.npz", split)
        expected = load_dataset(str(data), split, 64)
        assert np.array_equal(images, expected.images) and np.array_equal(masks, expected.masks)
