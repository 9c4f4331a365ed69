"""`llm4seg bench`: JSON schema, Dice against a hand-made case, agreement with the first artifact."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from llm4seg.cli.main import app
from llm4seg.runtime.core.comparator import mask_agreement, score


class FixedSegmenter:
    """Predicts the left half of every image as foreground (probability 0.9, else 0.1)."""

    threshold = 0.5

    def segment(self, images, binary=True):
        out = []
        for img in images:
            p = np.full(img.shape[:2], 0.1, np.float32)
            p[:, : img.shape[1] // 2] = 0.9
            out.append((p > self.threshold).astype(np.uint8) if binary else p)
        return out


def test_score_on_hand_made_case():
    image = np.zeros((10, 20, 3), np.uint8)
    truth = np.zeros((10, 20), bool)
    truth[:, :5] = True  # 50 px; prediction is 100 px containing them
    metrics, probs = score(FixedSegmenter(), [image], [truth])
    assert metrics["dice"] == 2 * 50 / (50 + 100) and metrics["iou"] == 50 / 100
    predicted = [p > 0.5 for p in probs]
    assert mask_agreement(predicted, predicted) == 1.0


@pytest.mark.parametrize("interleave", [False, True], ids=["sequential", "interleaved"])
def test_bench_json_schema_and_plots(exported, synthetic_folder, tmp_path, interleave):
    out, _ = exported
    result = CliRunner().invoke(app, ["bench", "--engine", str(out / "model.onnx"), "--engine", str(out / "model.int8.onnx"),
                                      "--data", str(synthetic_folder), "--batch", "1", "--batch", "2", "--iterations", "2",
                                      "--warmup", "1", "--limit", "6", "--json", "--out", str(tmp_path / "b")]
                                + (["--interleave"] if interleave else []))
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert "cpu" in payload["machine"] and "onnxruntime" in payload["machine"]
    results = payload["results"]
    assert [(r["precision"], r["batch"]) for r in results] == [("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)]
    for r in results:
        assert {"artifact", "backend", "precision", "batch", "latency_ms", "throughput_ips", "dice"} <= set(r)
        assert {"p50", "p90", "p99"} <= set(r["latency_ms"]) and r["peak_rss_mb"] > 0
        assert 0 <= r["dice"] <= 1
    assert results[0]["dice_agreement_with_first"] == 1.0
    scopes = {r["rss_scope"] for r in results}
    assert scopes == ({"process, all artifacts loaded"} if interleave else {"process so far (artifacts run one after another)"})
    assert (tmp_path / "b" / "bench.json").is_file() and cv2.imread(str(tmp_path / "b" / "bench.png")) is not None


@pytest.mark.slow
def test_bench_compiles_pt2_programs_and_reports_it(exported, synthetic_folder, tmp_path, monkeypatch):
    """--compile aoti: the .pt2 row is timed on the AOTInductor package (compile time and cache use
    in the JSON); the ONNX row beside it is untouched; both give the same masks."""
    monkeypatch.setenv("LLM4SEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    out, _ = exported
    args = ["bench", "--engine", str(out / "model.onnx"), "--engine", str(out / "model.pt2"), "--compile", "aoti",
            "--data", str(synthetic_folder), "--iterations", "2", "--warmup", "1", "--limit", "4", "--interleave"]
    result = CliRunner().invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    onnx_row, pt2_row = json.loads(result.stdout)["results"]
    assert onnx_row["compiled"] is None
    assert pt2_row["compiled"]["compiler"] == "aoti" and not pt2_row["compiled"]["cache_hit"]
    assert pt2_row["compiled"]["compile_s"] > 0 and pt2_row["dice_agreement_with_first"] > 0.99
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "model.pt2: aoti loaded from the cache" in again.output, again.output
    assert "torch+aoti" in again.output
