"""The README's bad-input table, row by row, through the CLI: each gets `error:` + `hint:`, exit 1
(Ctrl-C: 130), and never a traceback (issue 9, item 19)."""

from __future__ import annotations

import errno
import json
import shutil

import cv2
import numpy as np
import pytest

from typer.testing import CliRunner

from llm4seg.cli.main import app
from tests.conftest import graph_with_external_data, write_sealed


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_error(result, *fragments, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def test_masks_stored_as_0_1_train_on_their_foreground(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        cv2.imwrite(str(root / "images" / f"c{i}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        mask = np.zeros((40, 40), np.uint8)
        mask[10:30, 8:20] = 1
        cv2.imwrite(str(root / "masks" / f"c{i}.png"), mask)
    result = invoke("train", "--model", "cmunext_s", "--data", root, "--image-size", 32, "--epochs", 1,
                    "--batch-size", 4, "--device", "cpu", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "masks: 8-bit masks with values 0/1: foreground = value > 0" in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["mask_encoding"]["values"] == [1]


def test_multiclass_masks(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(4):
        cv2.imwrite(str(root / "images" / f"c{i}.png"), np.zeros((20, 20, 3), np.uint8))
        mask = np.zeros((20, 20), np.uint8)
        mask[2:8], mask[10:18] = 1, 2
        cv2.imwrite(str(root / "masks" / f"c{i}.png"), mask)
    assert_error(invoke("train", "--data", root, "--epochs", 1, "--out", tmp_path / "run"),
                 "error: the masks in", "fit no binary encoding", "hint:")


def _small_folder(root, masks=True):
    (root / "images").mkdir(parents=True)
    if masks:
        (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        cv2.imwrite(str(root / "images" / f"c{i}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        if masks:
            mask = np.zeros((40, 40), np.uint8)
            mask[10:30, 8:20] = 255
            cv2.imwrite(str(root / "masks" / f"c{i}.png"), mask)
    return root


@pytest.mark.parametrize("fault", ["missing folder", "no masks", "unknown split"])
def test_train_refused_on_its_data_leaves_nothing_and_the_fix_just_runs(tmp_path, fault):
    """Issue 19, item 2: a train that fails on its data creates no run, so the corrected command needs
    no --resume (which would repeat the bad setting)."""
    good = _small_folder(tmp_path / "good")
    data = {"missing folder": tmp_path / "absent", "no masks": _small_folder(tmp_path / "bare", masks=False),
            "unknown split": good}[fault]
    extra = ["--split", "train9"] if fault == "unknown split" else []
    common = ["--model", "cmunext_s", "--image-size", 32, "--epochs", 1, "--batch-size", 4, "--device", "cpu"]
    for out in (tmp_path / "new", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        result = invoke("train", *common, "--data", data, *extra, "--out", out)
        assert_error(result, "error:", "hint:")
        assert "run folder:" not in result.output  # issue 34: no folder named that is then removed
        assert (not out.exists()) if out.name == "new" else list(out.iterdir()) == []
        fixed = invoke("train", *common, "--data", good, "--out", out)
        assert fixed.exit_code == 0, fixed.output
        assert (out / "checkpoints" / "last" / "model.safetensors").is_file()


def test_resumed_real_data_run_suggests_eval_on_its_own_data(tmp_path):
    """Issue 34, item 18 of issue 33: `train --resume RUN` names no --data, yet the next step must
    evaluate on the run's data, not on the synthetic set."""
    data = _small_folder(tmp_path / "d")
    run = tmp_path / "run"
    common = ["--model", "cmunext_s", "--image-size", 32, "--epochs", 1, "--batch-size", 4, "--device", "cpu"]
    assert invoke("train", *common, "--data", data, "--out", run).exit_code == 0
    resumed = invoke("train", "--resume", run, "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert f"--data {data}" in resumed.output and "--synthetic-count" not in resumed.output


def test_bench_names_the_split_it_scored(exported, tmp_path):
    """Issue 34, item 7: `bench --data DIR --split val1` printed the images used without the split."""
    data = _small_folder(tmp_path / "d")
    (data / "splits").mkdir()
    (data / "splits" / "val1.txt").write_text("c0\nc1\nc2\n")
    result = invoke("bench", "--engine", exported[0] / "model.onnx", "--data", data, "--split", "val1",
                    "--iterations", 1, "--warmup", 0)
    assert result.exit_code == 0, result.output
    assert f"3 image(s) of split val1 of {data}" in result.output


def test_resume_with_other_settings_is_refused(tmp_path):
    run = tmp_path / "run"
    ok = invoke("train", "--model", "cmunext_s", "--image-size", 32, "--epochs", 1, "--batch-size", 4,
                "--synthetic-count", 12, "--device", "cpu", "--out", run, "--json")
    assert ok.exit_code == 0, ok.output
    assert_error(invoke("train", "--resume", run, "--epochs", 5, "--lr", 0.1),
                 "--epochs 5 (the run has 1)", "--lr 0.1 (the run has 0.01)", "hint: drop those options")


def test_out_folder_that_is_a_checkpoint(tmp_path, trained_checkpoint):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    before = (ckpt / "config.json").read_text()
    assert_error(invoke("train", "--epochs", 1, "--out", ckpt), "is not empty and is not an llm4seg run")
    assert (ckpt / "config.json").read_text() == before


def test_bench_option_and_artifact_errors(exported, tmp_path):
    onnx = exported[0] / "model.onnx"
    assert_error(invoke("bench", "--engine", onnx, "--batch", 0), "error: --batch 0 must be at least 1")
    assert_error(invoke("bench", "--engine", onnx, "--iterations", 0), "error: --iterations 0 must be at least 1")
    assert_error(invoke("bench", "--engine", onnx, "--compile", "fast"), "--compile fast is not a compiler", "--compile aoti")
    assert_error(invoke("bench", "--engine", onnx, "--compile", "aoti"), "applies to .pt2 programs", "--pt2")
    assert_error(invoke("video", "no-clip.mp4", "--engine", onnx, "--compile", "aoti"), "applies to .pt2 programs")
    art = tmp_path / "art"
    art.mkdir()
    (art / "model.onnx").write_bytes(b"garbage")
    manifest = json.loads((exported[0] / "manifest.json").read_text())
    (art / "manifest.json").write_text(json.dumps(manifest))
    assert_error(invoke("bench", "--engine", art / "model.onnx"), "does not match the sha256", "hint: ")
    entry = manifest["artifacts"]["model.onnx"]
    from llm4seg.fileio import file_sha256

    manifest["artifacts"]["model.onnx"] = dict(entry, sha256=file_sha256(art / "model.onnx"))
    write_sealed(art, manifest)
    assert_error(invoke("bench", "--engine", art / "model.onnx"), "onnxruntime cannot load")
    del manifest["artifacts"]["model.onnx"]["threshold"]
    (art / "manifest.json").write_text(json.dumps(manifest))
    assert_error(invoke("bench", "--engine", art / "model.onnx"), "lacks threshold")


def test_bench_names_an_unreadable_image(exported, synthetic_folder, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(synthetic_folder, data)
    victim = sorted((data / "images").iterdir())[0]
    victim.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert_error(invoke("bench", "--engine", exported[0] / "model.onnx", "--data", data, "--iterations", 1),
                 victim.stem, "truncated PNG")


def test_export_with_zero_calibration_images(trained_checkpoint, synthetic_folder, tmp_path):
    assert_error(invoke("export", trained_checkpoint, "--out", tmp_path / "a", "--int8", "--calib", synthetic_folder,
                        "--calib-images", 0), "--calib-images 0 must be at least 1")


def test_video_with_a_camera_that_is_not_there(exported, tmp_path):
    assert_error(invoke("video", "7", "--engine", exported[0] / "model.onnx", "--out", tmp_path / "o.mp4"),
                 "camera 7 cannot be opened", "connected")


def test_checkpoint_folder_given_to_the_runtime(trained_checkpoint, tmp_path):
    assert_error(invoke("bench", "--engine", trained_checkpoint), "not training checkpoints", "--pt2")


@pytest.mark.parametrize("exc, fragment", [
    (OSError(errno.ENOSPC, "No space left on device", "/runs/x/model.safetensors"), "the disk is full"),
    (PermissionError(errno.EACCES, "Permission denied", "/readonly/run"), "permission denied: /readonly/run"),
    (KeyboardInterrupt(), "interrupted (Ctrl-C)"),
])
def test_system_errors_at_the_boundary(monkeypatch, exc, fragment):
    def fail(*a, **k):
        raise exc

    monkeypatch.setattr("llm4seg.training.run.train", fail)
    result = invoke("train", "--epochs", 1, "--out", "/nonexistent/should-not-be-created")
    assert_error(result, fragment, code=130 if isinstance(exc, KeyboardInterrupt) else 1)


def test_bench_without_matplotlib_prints_results_and_names_the_plot_extra(exported, tmp_path, monkeypatch):
    """Issue 19, item 4: on a runtime-only box (no matplotlib) bench still prints its table and writes
    bench.json; the missing plot is named with its own small extra, not `llm4seg[train]`."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = invoke("bench", "--engine", exported[0] / "model.onnx", "--iterations", 2, "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "p50 ms" in result.output and (tmp_path / "b" / "bench.json").is_file()
    assert "bench.png not written" in result.output and "llm4seg[plot]" in result.output
    assert not (tmp_path / "b" / "bench.png").exists()


@pytest.mark.parametrize("command", ["eval", "export"])
def test_a_run_folder_given_as_a_checkpoint_points_at_its_best(trained_checkpoint, tmp_path, command):
    """Issue 19, item 6: the hint names RUN/checkpoints/best, not a generic 'pass a checkpoint'."""
    run = trained_checkpoint.parent.parent
    args = [command, run] + (["--out", tmp_path / "a"] if command == "export" else [])
    assert_error(invoke(*args), "is a training run folder", f"hint: pass its checkpoint: {run / 'checkpoints' / 'best'}")


@pytest.mark.parametrize("command", ["bench", "video"])
def test_a_plan_not_in_the_manifest_hints_adopt_engine(exported, tmp_path, command):
    """Issue 19, item 7: a .plan built on the target is adopted, not re-exported."""
    art = tmp_path / "art"
    shutil.copytree(exported[0], art)
    (art / "model.fp16.plan").write_bytes(b"an engine trtexec wrote")
    args = ["bench", "--engine", art / "model.fp16.plan"] if command == "bench" else \
        ["video", "clip.mp4", "--engine", art / "model.fp16.plan", "--out", tmp_path / "o.mp4"]
    result = invoke(*args)
    assert_error(result, "has no entry for model.fp16.plan", "llm4seg adopt-engine")
    assert "re-run" not in result.output


def test_refused_int8_with_engine_still_prints_the_fp16_build_commands(trained_checkpoint, synthetic_folder, tmp_path,
                                                                       monkeypatch):
    """Issue 19, item 8: FP16 was written, so its engine recipe is printed before the INT8 error."""
    from llm4seg.errors import ExportError
    from llm4seg.export import int8

    def refuse(*args, **kwargs):
        error = ExportError("no INT8 candidate kept mask Dice within 0.5 points of FP32 (forced)", hint="ship FP16")
        error.candidates = []
        raise error

    monkeypatch.setattr(int8, "int8_from_onnx", refuse)
    result = invoke("export", trained_checkpoint, "--out", tmp_path / "a", "--fp16", "--int8", "--calib",
                    synthetic_folder, "--engine", "--parity-images", 2, "--calib-images", 2)
    assert_error(result, "no INT8 candidate", "trtexec --onnx=model.fp16.onnx", "llm4seg adopt-engine model.fp16.plan")


def test_refused_int8_with_triton_says_the_repository_was_skipped_and_how_to_write_it(trained_checkpoint,
                                                                                    synthetic_folder, tmp_path,
                                                                                    monkeypatch):
    """Issue 34, item 3: a refused INT8 with --triton left no repository without a word."""
    from llm4seg.errors import ExportError
    from llm4seg.export import int8

    def refuse(*args, **kwargs):
        error = ExportError("no INT8 candidate passed its gate against the FP32 graph (forced)", hint="ship FP16")
        error.candidates = []
        raise error

    monkeypatch.setattr(int8, "int8_from_onnx", refuse)
    out, repo = tmp_path / "a", tmp_path / "repo"
    result = invoke("export", trained_checkpoint, "--out", out, "--int8", "--calib", synthetic_folder, "--no-frames",
                    "--triton", repo, "--parity-images", 2, "--calib-images", 2)
    assert_error(result, "no INT8 candidate", f"llm4seg triton {out} --out {repo}")
    assert (out / "model.onnx").is_file() and not repo.exists()


def test_eval_without_split_scores_the_held_out_split_like_export(trained_checkpoint, tmp_path):
    """Issue 19, item 5: one default rule (val, else val1) for eval and export, printed."""
    from llm4seg.data.datasets import held_out_split
    from llm4seg.export.options import ExportOptions, default_splits

    data = _small_folder(tmp_path / "d")
    (data / "splits").mkdir()
    (data / "splits" / "train.txt").write_text("\n".join(f"c{i}" for i in range(5)) + "\n")
    (data / "splits" / "val.txt").write_text("c5\nc6\nc7\n")
    result = invoke("eval", trained_checkpoint, "--data", data, "--out", tmp_path / "rep", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 3 and "scoring split val of" in result.stderr
    assert default_splits(ExportOptions(out=tmp_path, data=str(data))).split == held_out_split(str(data), None) == "val"
    (data / "splits" / "val.txt").rename(data / "splits" / "val1.txt")
    assert held_out_split(str(data), None) == "val1" and held_out_split(str(data), "train") == "train"


def test_resume_refuses_another_model_or_out_and_a_split_with_duplicates(tmp_path):
    """Issue 20, item 8: `--resume RUN --model X` and `--out elsewhere` were ignored; duplicate split
    lines trained an image twice."""
    common = ["--image-size", 32, "--epochs", 1, "--batch-size", 4, "--device", "cpu", "--synthetic-count", 12]
    run = tmp_path / "run"
    assert invoke("train", "--model", "cmunext_s", *common, "--out", run).exit_code == 0
    assert_error(invoke("train", "--resume", run, "--model", "llm4seg"), "--model 'llm4seg' (the run has 'cmunext_s')")
    assert_error(invoke("train", "--resume", run, "--out", tmp_path / "elsewhere"), "--out", "drop --out")
    data = _small_folder(tmp_path / "d")
    (data / "splits").mkdir()
    (data / "splits" / "train.txt").write_text("c0\nc1\nc2\nc1\n")
    assert_error(invoke("train", "--model", "cmunext_s", *common, "--data", data, "--split", "train", "--out",
                        tmp_path / "r2"), "more than once", "'c1'")


@pytest.mark.parametrize("code,fragment", [(28, "the disk is full"), (27, "File too large")])
def test_a_full_disk_or_size_limit_while_saving_weights_names_the_file(tmp_path, monkeypatch, code, fragment):
    """Issue 20, item 10: safetensors' own exception type (not OSError) reached the user as a traceback."""
    import safetensors.torch

    def failing_save(tensors, filename, metadata=None):
        raise RuntimeError(f'Error while serializing: IoError(Os {{ code: {code}, kind: StorageFull, message: "x" }})')

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    result = invoke("train", "--model", "cmunext_s", "--image-size", 32, "--epochs", 1, "--batch-size", 4,
                    "--synthetic-count", 12, "--device", "cpu", "--out", tmp_path / "run")
    assert_error(result, fragment, "model.safetensors", "hint:")


def test_check_refuses_custom_ops_and_data_outside_the_folder_without_a_traceback(tmp_path):
    """Issue 33, item 14: `check` on a custom-domain op, and on a graph whose external data points
    outside its folder, printed tracebacks."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, 64, 64])
    custom = helper.make_graph([helper.make_node("Foo", ["image"], ["prob"], domain="com.example")], "g", [x], [y])
    onnx.save(helper.make_model(custom, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.example", 1)]), tmp_path / "custom.onnx")
    (tmp_path.parent / "outside.bin").write_bytes(bytes(64 * 64 * 4))
    onnx.save(graph_with_external_data("../outside.bin"), tmp_path / "outside.onnx")
    for name, words in (("custom.onnx", "custom domain 'com.example'"),
                        ("outside.onnx", "tensor 'w' keeps its data at '../outside.bin', outside the graph's folder")):
        result = invoke("check", tmp_path / name)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert words in result.output and "hint:" in result.output, result.output


def test_a_folder_of_pngs_is_told_how_to_pass_them(exported, tmp_path):
    """Issue 44, item 12: any folder of PNG frames was taken for a DICOM series ("holds no DICOM file")."""
    (tmp_path / "frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "frames" / f"{i:04d}.png"), np.zeros((20, 30, 3), np.uint8))
    result = invoke("video", tmp_path / "frames", "--engine", exported[0] / "model.onnx", "--out", tmp_path / "o.mp4")
    assert_error(result, "is a folder of 3 images", "%04d.png")


def test_check_on_a_custom_domain_op_is_an_error_not_a_traceback(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Custom", ["image"], ["prob"], domain="com.example")], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 1, 64, 64])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]),
              tmp_path / "custom.onnx")
    assert_error(invoke("check", tmp_path / "custom.onnx"), "custom.onnx", "hint:")


def test_a_killed_seg_writes_leftover_is_cleared_by_the_next_write(tmp_path):
    """Issue 44, item 12: a SEG write killed mid-way left a hidden `.NAME.tmpPID` file for ever."""
    pydicom = pytest.importorskip("pydicom")
    from llm4seg.runtime.doors.dicom.results import write_datasets
    from tests.runtime.conftest import write_dicom

    out = tmp_path / "out"
    out.mkdir()
    (out / ".seg_frame0001.dcm.tmp4242").write_bytes(b"half a SEG")
    ds = pydicom.dcmread(write_dicom(pydicom, np.zeros((8, 8, 3), np.uint8), tmp_path / "x.dcm"))
    write_datasets({"seg_frame0001.dcm": ds}, out)
    assert sorted(p.name for p in out.iterdir()) == ["seg_frame0001.dcm"]


def test_dicom_out_over_the_source_series_or_a_file_is_refused_before_any_frame(exported, tmp_path):
    """Issue 44, item 8: --dicom-out as the input series folder (the SEG joined the series) or as an
    existing file (refused only after the whole run)."""
    pydicom = pytest.importorskip("pydicom")
    from tests.runtime.conftest import write_dicom

    series = tmp_path / "series"
    series.mkdir()
    for i in range(2):
        write_dicom(pydicom, np.zeros((16, 16, 3), np.uint8), series / f"i{i}.dcm", InstanceNumber=i + 1,
                    StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2.3.4")
    engine = exported[0] / "model.onnx"
    result = invoke("video", series, "--engine", engine, "--out", tmp_path / "o.mp4", "--seg-frames", "1",
                    "--dicom-out", series / "seg")
    assert_error(result, "is inside the source series folder")
    (tmp_path / "taken").write_text("a file")
    result = invoke("video", series, "--engine", engine, "--out", tmp_path / "o2.mp4", "--seg-frames", "1",
                    "--dicom-out", tmp_path / "taken")
    assert_error(result, "is an existing file")
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o2.mp4").exists()  # refused before any frame
