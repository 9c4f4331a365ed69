"""DICOM images in dataset folders (issue 35): eval and bench read images/*.dcm (and suffixless
PACS files) through the runtime's DICOM conversions; Dice through DICOM equals Dice through the
PNGs; HD95 in mm on the image's own grid, checked by hand."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from tests.conftest import dataset_or_skip, installed_or_skip
from tests.runtime.conftest import write_dicom


@pytest.fixture(autouse=True)
def pydicom():
    installed_or_skip(lambda: __import__("pydicom"), "pydicom", "pip install 'llm4seg[dicom]' (make setup installs it)")
    import pydicom

    return pydicom


def dicom_copy(pydicom, folder, out, stems=None, spacing_mm=0.1, suffixless=()):
    """`folder` (images/*.png|jpg, masks/) again with every image written as an RGB DICOM (RLE for
    every other one) and the same masks; `suffixless` stems get no file suffix (as PACS exports)."""
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    images = sorted(p for p in (folder / "images").iterdir() if stems is None or p.stem in stems)
    for i, path in enumerate(images):
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        name = path.stem if path.stem in suffixless else f"{path.stem}.dcm"
        write_dicom(pydicom, rgb, out / "images" / name, rle=i % 2 == 1, spacing_mm=spacing_mm)
        mask = next((folder / "masks").glob(f"{path.stem}.*"))
        shutil.copy(mask, out / "masks" / mask.name)
    return out


def test_dice_through_dicom_equals_dice_through_png(pydicom, synthetic_folder, trained_checkpoint, tmp_path):
    from llm4seg.checkpoint import load_checkpoint
    from llm4seg.data.datasets import load_dataset
    from llm4seg.evaluate import evaluate_model
    from llm4seg.training.loop import pick_device

    bare = sorted(p.stem for p in (synthetic_folder / "images").iterdir())[3]
    dcm = dicom_copy(pydicom, synthetic_folder, tmp_path / "dcm", suffixless={bare})
    assert (dcm / "images" / bare).is_file()  # a PACS export's name: no suffix, DICM preamble
    model = load_checkpoint(trained_checkpoint, device=pick_device("cpu"))
    png_data = load_dataset(str(synthetic_folder), None, model.config.image_size)
    dcm_data = load_dataset(str(dcm), None, model.config.image_size)
    assert png_data.stems == dcm_data.stems and len(png_data) == 24
    np.testing.assert_array_equal(png_data.images, dcm_data.images)  # the same pixels reach the model
    png_rows, png_probs = evaluate_model(model, png_data, pick_device("cpu"))
    dcm_rows, dcm_probs = evaluate_model(model, dcm_data, pick_device("cpu"))
    np.testing.assert_array_equal(png_probs, dcm_probs)
    assert png_rows == dcm_rows
    assert np.mean([r["dice"] for r in dcm_rows]) > 0.5  # real masks compared, not two empty ones


def test_busi_as_dicom_scores_as_the_pngs_in_eval_with_hd95_in_mm(pydicom, trained_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    busi = dataset_or_skip("busi")
    stems = sorted(p.stem for p in (busi / "images").iterdir())[:6]
    png = tmp_path / "png"
    (png / "images").mkdir(parents=True)
    (png / "masks").mkdir()
    for stem in stems:
        for sub in ("images", "masks"):
            src = next((busi / sub).glob(f"{stem}.*"))
            shutil.copy(src, png / sub / src.name)
    dcm = dicom_copy(pydicom, png, tmp_path / "dcm", spacing_mm=0.08)
    from llm4seg.data.datasets import load_dataset

    # The model (trained on synthetic shapes) may see nothing in BUSI: what makes the scores equal is
    # that the same pixels reach it, checked first and independently of any mask it draws.
    np.testing.assert_array_equal(load_dataset(str(png), None, 64).images, load_dataset(str(dcm), None, 64).images)
    runs = {}
    for name, folder in (("png", png), ("dcm", dcm)):
        result = CliRunner().invoke(app, ["eval", str(trained_checkpoint), "--data", str(folder), "--out",
                                          str(tmp_path / f"eval-{name}"), "--device", "cpu", "--json"])
        assert result.exit_code == 0, result.output
        with open(tmp_path / f"eval-{name}" / "per_image.csv") as f:
            runs[name] = (json.loads(result.stdout), list(csv.DictReader(f)))
    (png_summary, png_rows), (dcm_summary, dcm_rows) = runs["png"], runs["dcm"]
    assert [{k: r[k] for k in png_rows[0]} for r in dcm_rows] == png_rows  # every metric, every image
    assert "hd95_mm" not in png_summary and dcm_summary["hd95_mm_n"] == 6
    assert all(float(r["hd95_mm"]) >= 0 for r in dcm_rows)


def test_hd95_in_mm_by_hand(pydicom, tmp_path):
    """A 64x64 DICOM at 0.2 mm per row and 0.1 mm per column; the truth a 20x20 square, the
    prediction the same square moved 3 columns right (then 3 rows down). Every surface point of
    one square that is not on the other lies 3 pixels from it along the shift, and more than 5 % of
    the points do: HD95 is 3 columns = 0.3 mm, then 3 rows = 0.6 mm; in pixels 3 both times."""
    from llm4seg.data.datasets import ArrayDataset
    from llm4seg.evaluate import add_hd95_mm
    from llm4seg.metrics import hd95

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    path = write_dicom(pydicom, np.zeros((64, 64, 3), np.uint8), tmp_path / "images" / "case.dcm")
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = [0.2, 0.1]  # row spacing, column spacing
    ds.save_as(path)
    truth = np.zeros((64, 64), np.uint8)
    truth[20:40, 20:40] = 255
    cv2.imwrite(str(tmp_path / "masks" / "case.png"), truth)
    data = ArrayDataset("case", np.zeros((1, 64, 64, 3), np.uint8), truth[None] > 0, ["case"],
                        mask_encoding={"threshold": 127}, files={"case": (path, tmp_path / "masks" / "case.png")})
    for shift, expected_mm in (((0, 3), 0.3), ((3, 0), 0.6)):
        pred = np.roll(truth > 0, shift, axis=(0, 1)).astype(np.float32)
        rows = [{"stem": "case"}]
        assert add_hd95_mm(rows, pred[None], data, 0.5) == 1
        assert rows[0]["hd95_mm"] == pytest.approx(expected_mm)
        assert hd95(pred > 0.5, truth > 0) == pytest.approx(3.0)


def test_a_cine_in_a_dataset_folder_is_reported_not_guessed(pydicom, tmp_path):
    from pydicom.data import get_testdata_file

    from llm4seg.data.folder import read_pairs, scan_folder
    from llm4seg.errors import DataError

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    shutil.copy(get_testdata_file("examples_ybr_color.dcm"), tmp_path / "images" / "loop.dcm")
    cv2.imwrite(str(tmp_path / "masks" / "loop.png"), np.zeros((240, 320), np.uint8))
    with pytest.raises(DataError, match="loop: unreadable image file .*30-frame DICOM cine.*llm4seg video"):
        read_pairs(scan_folder(tmp_path), False, tmp_path)


def test_bench_scores_a_dicom_folder(pydicom, synthetic_folder, exported, tmp_path):
    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    dcm = dicom_copy(pydicom, synthetic_folder, tmp_path / "dcm")
    args = ["bench", "--engine", str(exported[0] / "model.onnx"), "--limit", "8", "--json", "--data"]
    scored = {}
    for name, folder in (("png", synthetic_folder), ("dcm", dcm)):
        result = CliRunner().invoke(app, [*args, str(folder)])
        assert result.exit_code == 0, result.output
        scored[name] = [r.get("dice") for r in json.loads(result.stdout)["results"]]
    assert scored["dcm"] == scored["png"] and all(d is not None for d in scored["dcm"])
    assert np.mean(scored["dcm"]) > 0.5  # the model segments these: equal Dice is not two empty masks
