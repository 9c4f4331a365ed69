"""`llm4seg bench`: JSON schema, Dice against a hand-made case, agreement with the first artifact."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from llm4seg.cli.main import app
from llm4seg.runtime.bench import agreement_dice, score


class FixedSegmenter:
    """Predicts the left half of every image as foreground."""

    def segment(self, images):
        out = []
        for img in images:
            m = np.zeros(img.shape[:2], np.uint8)
            m[:, : img.shape[1] // 2] = 1
            out.append(m)
        return out


def test_score_on_hand_made_case():
    image = np.zeros((10, 20, 3), np.uint8)
    truth = np.zeros((10, 20), bool)
    truth[:, :5] = True  # 50 px; prediction is 100 px containing them
    metrics, predicted = score(FixedSegmenter(), [image], [truth])
    assert metrics["dice"] == 2 * 50 / (50 + 100) and metrics["iou"] == 50 / 100
    assert agreement_dice(predicted, predicted) == 1.0


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
