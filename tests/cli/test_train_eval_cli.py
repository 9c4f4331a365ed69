"""`llm4seg train` and `llm4seg eval` through the CLI, on tiny data."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from llm4seg.cli.main import app
from tests.data.test_folder import make_folder

runner = CliRunner()


def test_train_then_eval_json(tmp_path):
    data = make_folder(tmp_path / "data", n=10, size=(48, 40))
    result = runner.invoke(app, ["train", "--model", "cmunext_s", "--data", str(data), "--image-size", "32",
                                 "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                                 "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs"] == 1
    ckpt = tmp_path / "run" / "checkpoints" / "best"
    result = runner.invoke(app, ["eval", str(ckpt), "--data", str(data), "--json", "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n"] == 10 and {"dice", "iou", "hd95", "specificity"} <= set(payload)
    rows = list(csv.DictReader(open(tmp_path / "rep" / "per_image.csv")))
    assert len(rows) == 10 and abs(sum(float(r["dice"]) for r in rows) / 10 - payload["dice"]) < 1e-9
    assert len(list((tmp_path / "rep" / "overlays").glob("*.png"))) == 8


def test_train_bad_option_is_reported(tmp_path):
    result = runner.invoke(app, ["train", "--epochs", "0", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "epochs=0 is not valid" in result.stderr


def test_eval_on_missing_checkpoint(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "none"), "--json"])
    assert result.exit_code == 1 and "is not a folder" in result.stderr


def test_model_option_flags_reach_the_model(tmp_path):
    import json

    from typer.testing import CliRunner

    from llm4seg.cli.main import app

    result = CliRunner().invoke(app, ["train", "--model", "llm4seg", "--llm", "shape:smollm2-135m", "--init", "random",
                                      "--size", "s", "--trainable", "--in-channels", "3", "--image-size", "32",
                                      "--epochs", "1", "--batch-size", "4", "--synthetic-count", "12", "--device", "cpu",
                                      "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    model = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert model["dims"][-1] == 128 and model["block"]["init"] == "random" and model["block"]["trainable"] is True  # size s: dims end at 128


def test_eval_report_of_a_run_checkpoint_goes_to_the_run_folder(tmp_path):
    data = make_folder(tmp_path / "data", n=10, size=(48, 40))
    assert runner.invoke(app, ["train", "--model", "cmunext_s", "--data", str(data), "--image-size", "32", "--epochs", "1",
                               "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "run"), "--json"]).exit_code == 0
    result = runner.invoke(app, ["eval", str(tmp_path / "run" / "checkpoints" / "best"), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    # Named by dataset and split, outside checkpoints/ (which each save replaces whole).
    assert json.loads(result.stdout)["report_dir"] == str(tmp_path / "run" / "eval-best-data-all")
    assert (tmp_path / "run" / "eval-best-data-all" / "summary.json").is_file()
