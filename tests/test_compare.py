"""`llm4seg compare` on the synthetic set: two variants x two seeds, killed in the middle and
continued; the report's numbers are checked against the per-run scores (issue 11)."""

from __future__ import annotations

import re

import csv
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from llm4seg import fileio
from llm4seg.cli.main import app
from llm4seg.compare import t975

ARGS = ["compare", "--variants", "cmunext_s,cmunext", "--seeds", "0,1", "--epochs", "2", "--image-size", "32",
        "--batch-size", "4", "--synthetic-count", "16", "--device", "cpu"]


class Killed(BaseException):
    pass


@pytest.mark.slow
def test_tiny_matrix_killed_and_continued(tmp_path):
    out = tmp_path / "cmp"
    calls = {"n": 0}

    def kill_in_third_run(label):
        calls["n"] += 1
        if label == "wrote CURRENT":  # each run saves its state once (at its end)
            calls["saves"] = calls.get("saves", 0) + 1
            if calls["saves"] == 3:  # the third run, killed just before its state becomes current
                raise Killed(label)

    fileio.FAULT_HOOK = kill_in_third_run
    try:
        with pytest.raises(Killed):
            CliRunner().invoke(app, [*ARGS, "--out", str(out)], catch_exceptions=False)
    finally:
        fileio.FAULT_HOOK = None
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert (out / "runs" / "cmunext_s-all-s0" / "scores.json").is_file()
    assert not (out / "runs" / "cmunext_s-all-s1" / "scores.json").exists() and "cmunext_s-all-s1" in runs

    result = CliRunner().invoke(app, [*ARGS, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["missing"] == [] and len(report["runs"]) == 4
    scores = {(r["variant"], r["seed"]): r["metrics"]["iou"] for r in report["runs"]}
    for (variant, seed), iou in scores.items():
        per_run = json.loads((out / "runs" / f"{variant}-all-s{seed}" / "scores.json").read_text())
        assert per_run["metrics"]["iou"] == pytest.approx(iou)
        assert per_run["metrics"]["iou"] == pytest.approx(np.mean([r["iou"] for r in per_run["per_image"]]))
    base = [scores[("cmunext_s", s)] for s in (0, 1)]
    assert report["per_variant"]["cmunext_s"]["iou"]["mean"] == pytest.approx(np.mean(base))
    assert report["per_variant"]["cmunext_s"]["iou"]["sd"] == pytest.approx(np.std(base, ddof=1))
    d = np.array([scores[("cmunext", s)] - scores[("cmunext_s", s)] for s in (0, 1)])
    paired = report["paired_vs_baseline"]["cmunext"]["iou"]
    half = t975(1) * d.std(ddof=1) / math.sqrt(2)
    assert paired["n"] == 2 and paired["mean"] == pytest.approx(d.mean())
    assert paired["ci95"] == pytest.approx([d.mean() - half, d.mean() + half])
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["variant"], r["seed"]) for r in rows} == {(v, str(s)) for v, s in scores}
    assert (out / "compare.png").stat().st_size > 0 and "Paired differences" in (out / "report.md").read_text()


def test_other_options_on_the_same_folder_are_refused(tmp_path):
    out = tmp_path / "cmp"
    (out).mkdir()
    (out / "compare.json").write_text(json.dumps({"matrix": {"variants": ["a"], "splits": [None], "seeds": [0]}}))
    result = CliRunner().invoke(app, [*ARGS, "--out", str(out)])
    assert result.exit_code == 1 and "holds another comparison" in result.output
    assert "variants: ['a'] there, ['cmunext_s', 'cmunext'] now" in result.output.replace('\n', ' ')


def test_bad_variants_and_seeds(tmp_path):
    bad = CliRunner().invoke(app, ["compare", "--variants", "cmunext,nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "unknown nope" in bad.output
    seeds = CliRunner().invoke(app, ["compare", "--seeds", "0,a", "--out", str(tmp_path / "y")])
    assert seeds.exit_code == 1 and "'a' is not an integer" in seeds.output


@pytest.mark.slow
def test_parallel_runs_as_processes_give_the_same_report(tmp_path):
    args = ["compare", "--variants", "cmunext_s,cmunext", "--seeds", "3", "--epochs", "1", "--image-size", "32",
            "--batch-size", "4", "--synthetic-count", "12", "--device", "cpu", "--json"]
    serial = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    parallel = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--parallel", "2"])
    assert serial.exit_code == 0 and parallel.exit_code == 0, parallel.output
    a, b = json.loads(serial.stdout), json.loads(parallel.stdout)
    # The same runs: identical training; HD95 (OpenCV distance transforms) may differ in its last float bits.
    for ra, rb in zip(a["runs"], b["runs"]):
        assert ra["metrics"] == pytest.approx(rb["metrics"], rel=1e-5)


@pytest.mark.slow
def test_stop_after_leaves_the_rest_missing_and_a_rerun_continues(tmp_path):
    """--stop-after (GPU time slots): no run starts after the deadline, the report lists those as
    missing (not estimated); finished runs count whatever the deadline."""
    args = ["compare", "--variants", "cmunext_s,cmunext", "--seeds", "3", "--epochs", "1", "--image-size", "32",
            "--batch-size", "4", "--synthetic-count", "12", "--device", "cpu", "--out", str(tmp_path / "c")]
    none_yet = CliRunner().invoke(app, [*args, "--stop-after", "0"])
    assert none_yet.exit_code == 0, none_yet.output
    assert "2 of 2 runs not run yet" in none_yet.output and "Missing runs (not estimated)" in none_yet.output
    assert json.loads((tmp_path / "c" / "report.json").read_text())["missing"] == ["cmunext_s-all-s3", "cmunext-all-s3"]
    assert CliRunner().invoke(app, args).exit_code == 0
    kept = CliRunner().invoke(app, [*args, "--stop-after", "0", "--json"])
    assert kept.exit_code == 0 and json.loads(kept.stdout)["missing"] == []
    negative = CliRunner().invoke(app, [*args, "--stop-after", "-1"])
    assert negative.exit_code == 1 and "--stop-after -1 must be at least 0 minutes" in negative.output


@pytest.mark.slow
def test_paper_double_scaling_reaches_every_run_and_is_part_of_the_matrix(tmp_path):
    """--paper-double-scaling (the authors' extra /255, for the baseline check against their figures)
    is in every run's config; the same folder without it is another comparison, not a continuation."""
    args = ["compare", "--variants", "cmunext_s,cmunext", "--seeds", "5", "--epochs", "1", "--image-size", "32",
            "--batch-size", "4", "--synthetic-count", "12", "--device", "cpu", "--out", str(tmp_path / "d")]
    result = CliRunner().invoke(app, [*args, "--paper-double-scaling"])
    assert result.exit_code == 0, result.output
    configs = [json.loads(p.read_text())["train"] for p in sorted((tmp_path / "d" / "runs").glob("*/config.json"))]
    assert len(configs) == 2 and all(c["paper_double_scaling"] is True for c in configs)
    text = (tmp_path / "d" / "report.md").read_text()
    assert "--paper-double-scaling" in text and "--synthetic-count 12" in text  # the flags, not a dict
    plain = CliRunner().invoke(app, args)
    assert plain.exit_code == 1 and "holds another comparison" in plain.output
    assert "paper_double_scaling" in plain.output


def test_the_picture_shows_its_scale_and_the_paired_interval_and_the_settings_read_as_flags():
    """Issue 34, item 6: compare.png zoomed to 25.5-26.2 % (a 0.74-point gap looked like a cliff);
    report.md printed a raw dict with synthetic_count for a BUSI run."""
    import matplotlib.pyplot as plt

    from llm4seg.compare_report import MIN_SPAN_POINTS, compare_figure, settings_text

    runs = [{"variant": v, "split": s, "seed": 0, "metrics": {"iou": iou}}
            for s, (a, b) in (("val1", (0.255, 0.262)), ("val2", (0.258, 0.2654))) for v, iou in (("cmunext", a), ("llm4seg", b))]
    report = {"variants": ["cmunext", "llm4seg"], "baseline": "cmunext", "runs": runs,
              "paired_vs_baseline": {"llm4seg": {"iou": {"n": 2, "mean": 0.0072, "ci95": [-0.001, 0.0154]}}}}
    fig = compare_figure(report)
    low, high = fig.axes[0].get_ylim()
    assert high - low >= MIN_SPAN_POINTS and "spans" in fig.axes[0].get_ylabel()
    assert any("+0.72" in t.get_text() for t in fig.axes[1].texts)  # the paired mean and its interval
    plt.close(fig)
    train = {"epochs": 300, "image_size": 256, "synthetic_count": 200, "paper_double_scaling": False, "device": "auto"}
    assert settings_text(train, "/data/busi") == "--epochs 300 --image-size 256 --device auto"
    assert "--synthetic-count 200" in settings_text(train, "synthetic")


def test_each_cells_epochs_are_reported_while_it_trains(tmp_path):
    """Issue 34, item 5: compare printed nothing until a cell finished (hours at 300 epochs); now a
    line per finished epoch of any cell, with its validation IoU and the time left, also for cells
    that train in their own processes (--parallel)."""
    from llm4seg.compare import Matrix, run_matrix

    lines: list[str] = []
    matrix = Matrix(variants=["cmunext_s", "cmunext"], splits=[None], seeds=[0], data=None,
                    train={"image_size": 32, "epochs": 2, "batch_size": 4, "synthetic_count": 12, "device": "cpu"})
    run_matrix(matrix, tmp_path / "cmp", parallel=2, on_epoch=lines.append)
    for cell in ("cmunext_s-all-s0", "cmunext-all-s0"):
        mine = [line for line in lines if line.startswith(cell + ":")]
        # Issue 45, item 5: a cell's start is said at once (its first epoch may take many minutes).
        assert [line.split(",")[0] for line in mine] == [f"{cell}: started (2 epochs)", f"{cell}: epoch 1/2",
                                                         f"{cell}: epoch 2/2"], lines
        assert all("s/epoch" in line and "left" in line for line in mine[1:])
    ious = [line for line in lines if "val IoU" in line]
    assert ious and all(re.search(r"val IoU \d+\.\d\d %", line) for line in ious)  # in %, as every other line
    again: list[str] = []  # a continued matrix reports nothing old as news
    run_matrix(matrix, tmp_path / "cmp", parallel=2, on_epoch=again.append)
    assert again == []
