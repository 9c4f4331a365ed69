"""The one comparator (issue 23): agreement figures on hand-made cases, and the export's gate
running the artifact through the Segmenter preprocessing of the very entry it writes."""

from __future__ import annotations

import numpy as np
import pytest

from llm4seg.errors import ExportError
from llm4seg.runtime.backends import load_backend
from llm4seg.runtime.comparator import (Comparator, agreement, inputs_from_frames, mask_agreement,
                                        probs_from_frames)
from llm4seg.runtime.segmenter import Segmenter


def test_agreement_on_a_hand_made_case():
    reference = np.zeros((2, 4, 4), np.float32)
    reference[0, :2] = 0.9  # image 0: 8 foreground pixels; image 1: none
    candidate = reference.copy()
    candidate[0, :1] = 0.1  # 4 of the 8 lost: Dice 2*4/(4+8)
    stats = agreement(reference, candidate, 0.5, masks=reference > 0.5)
    assert stats["n"] == 2 and stats["max_abs_err"] == pytest.approx(0.8)
    assert stats["min_dice_agreement"] == pytest.approx(8 / 12) and stats["dice_agreement"] == pytest.approx((8 / 12 + 1) / 2)
    assert stats["reference_dice_vs_truth"] == 1.0 and stats["dice_vs_truth"] == stats["dice_agreement"]
    assert mask_agreement([reference[0] > 0.5], [candidate[0] > 0.5]) == pytest.approx(8 / 12)


def test_frames_go_through_the_segmenters_preprocessing(exported):
    out, _ = exported
    backend = load_backend(out / "model.onnx")
    frames = [np.random.default_rng(i).integers(0, 256, (40, 70, 3), dtype=np.uint8) for i in range(3)]
    seg = Segmenter(backend, layout="rgb")
    assert np.array_equal(inputs_from_frames(backend, frames), np.stack([seg.preprocess(f) for f in frames]))
    with backend:
        assert np.array_equal(probs_from_frames(backend, frames), seg.infer_batch(np.stack([seg.preprocess(f) for f in frames])))


def test_no_frames_is_an_error_not_a_perfect_score(exported):
    from llm4seg.errors import InputSpecError

    out, _ = exported
    with pytest.raises(InputSpecError, match="no frames"):
        probs_from_frames(load_backend(out / "model.onnx"), [])


def test_check_refuses_below_the_gate_and_names_the_artifact(exported):
    out, _ = exported
    frames = [np.full((64, 64, 3), v, np.uint8) for v in (30, 120, 220)]
    with load_backend(out / "model.onnx") as backend:
        probs = probs_from_frames(backend, frames)
    comparator = Comparator(frames, 1.0 - probs, threshold=0.5)  # the opposite masks as the reference
    with pytest.raises(ExportError, match=r"model\.onnx: mask Dice agreement .* below the gate 0\.99"):
        comparator.check(load_backend(out / "model.onnx"), 0.99)
    backend = load_backend(out / "model.onnx")
    _, stats = Comparator(frames, probs, threshold=0.5).check(backend, 0.99)
    # Exact: the same graph, session options, inputs and CPU in one process (onnxruntime's CPU
    # kernels are deterministic run to run on a machine, whichever x86-64 it is).
    assert stats["dice_agreement"] == 1.0 and stats["max_abs_err"] == 0.0 and not backend.loaded  # closed after


def test_the_export_gate_reads_the_preprocessing_it_writes(trained_checkpoint, synthetic_folder, tmp_path, monkeypatch):
    """A manifest entry whose normalisation differs from training's must fail its own gate: the gate
    feeds the held-out images through Segmenter.preprocess of that entry, not a copy of training's."""
    from llm4seg.export import job
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint

    real = job.graph_entry

    def shifted_mean(*args, **kwargs):
        entry = real(*args, **kwargs)
        entry["preprocess"]["mean"] = [m + 1.5 for m in entry["preprocess"]["mean"]]
        return entry

    monkeypatch.setattr(job, "graph_entry", shifted_mean)
    with pytest.raises(ExportError, match=r"model\.onnx: mask Dice agreement"):
        export_checkpoint(trained_checkpoint, ExportOptions(out=tmp_path / "a", data=str(synthetic_folder), parity_images=8),
                          log=lambda s: None)
    assert not (tmp_path / "a").exists()  # nothing kept
