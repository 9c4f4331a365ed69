"""The one comparator (issue 23): agreement figures on hand-made cases, and the export's gate
running the artifact through the Segmenter preprocessing of the very entry it writes."""

from __future__ import annotations

import numpy as np
import pytest

from llm4seg.errors import ExportError
from llm4seg.runtime.core.backends import load_backend
from llm4seg.runtime.core.comparator import (Comparator, agreement, gate_record, inputs_from_frames, mask_agreement,
                                        probs_from_frames, tolerance_for, verdict)
from llm4seg.runtime.core.segmenter import Segmenter


def test_agreement_on_a_hand_made_case():
    reference = np.zeros((3, 4, 4), np.float32)
    reference[0, :2] = 0.9  # image 0: 8 foreground pixels; images 1 and 2: none
    candidate = reference.copy()
    candidate[0, :1] = 0.1  # 4 of the 8 lost: Dice 2*4/(4+8)
    stats = agreement(reference, candidate, 0.5, masks=reference > 0.5)
    assert stats["n"] == 3 and stats["max_abs_err"] == pytest.approx(0.8)
    assert stats["mean_abs_err"] == pytest.approx(4 * 0.8 / 48)
    # Only frame 0 has foreground: two empty masks (frames 1, 2) are not counted as agreement.
    assert stats["mask_frames"] == 1 and stats["reference_foreground_frames"] == 1 and stats["masks_certified"]
    assert stats["min_dice_agreement"] == pytest.approx(8 / 12) and stats["dice_agreement"] == pytest.approx(8 / 12)
    assert stats["reference_dice_vs_truth"] == 1.0
    assert mask_agreement([reference[0] > 0.5], [candidate[0] > 0.5]) == pytest.approx(8 / 12)


def test_empty_reference_masks_certify_nothing_and_the_probability_bound_decides():
    """All-empty reference masks: mask agreement is vacuous (not counted as 1.0 evidence); a shift of
    the probabilities that leaves every mask empty still fails the probability bound."""
    reference = np.full((2, 8, 8), 0.1, np.float32)
    stats = agreement(reference, reference + 0.2, 0.5)
    assert stats["mask_frames"] == 0 and not stats["masks_certified"]
    assert verdict(stats, tolerance_for("fp32")) and "probability" in verdict(stats, tolerance_for("fp32"))[0]
    assert "certifies nothing" in gate_record(stats, tolerance_for("fp32"))["masks"]
    assert not verdict(agreement(reference, reference + 1e-4, 0.5), tolerance_for("fp32"))


def test_a_truth_bound_judges_masks_by_dice_against_the_truth_beside_the_reference():
    """Issue 47, item 3: with ground truth, masks that move at the boundary without getting worse pass
    (agreement 0.8 would fail a 0.995 agreement bound); masks worse than the reference's by more than
    the bound fail, naming both Dice values; without truth, agreement decides as before."""
    truth = np.zeros((1, 48, 48), bool)
    truth[0, 10:18, 10:18] = True  # 64 pixels
    reference = np.where(truth, 0.9, 0.1).astype(np.float32)
    reference[0, 10, 10:18] = 0.1  # the reference misses a row: Dice 2*56/120
    moved = reference.copy()
    moved[0, 10, 10:18], moved[0, 17, 10:18] = 0.9, 0.1  # finds that row, misses another: as good, not the same
    bounds = tolerance_for("int8", 0.995).with_truth_drop(0.005)
    stats = agreement(reference, moved, 0.5, masks=truth)
    assert stats["dice_agreement"] < 0.995 and stats["dice_vs_truth"] == pytest.approx(stats["reference_dice_vs_truth"])
    assert not verdict(stats, bounds) and "ground truth" in gate_record(stats, bounds)["masks"]
    assert verdict(stats, tolerance_for("int8", 0.995))  # agreement alone would refuse it
    worse = reference.copy()
    worse[0, 13:18, 10:18] = 0.1  # keeps 2 of the reference's 7 rows: Dice 2*16/80
    failed = verdict(agreement(reference, worse, 0.5, masks=truth), bounds)
    assert len(failed) == 1 and "Dice against the truth 0.4000" in failed[0] and "0.9333" in failed[0]
    no_truth = agreement(reference, moved, 0.5)  # no masks: the agreement bound decides
    assert verdict(no_truth, bounds) and "agreement" in verdict(no_truth, bounds)[0]


def test_non_finite_outputs_are_an_error_not_a_score():
    reference = np.full((1, 4, 4), 0.2, np.float32)
    with pytest.raises(ExportError, match="non-finite"):
        agreement(reference, reference * np.nan, 0.5)


def test_frames_go_through_the_segmenters_preprocessing(exported):
    out, _ = exported
    backend = load_backend(out / "model.onnx")
    frames = [np.random.default_rng(i).integers(0, 256, (40, 70, 3), dtype=np.uint8) for i in range(3)]
    seg = Segmenter(backend, layout="rgb")
    assert np.array_equal(inputs_from_frames(backend, frames), np.stack([seg.runner.tensor(seg.runner.rgb(f)) for f in frames]))
    with backend:
        got = probs_from_frames(backend, frames)
        assert all(np.array_equal(g, s) for g, s in zip(got, seg.segment(frames, binary=False)))
        assert got[0].shape == (40, 70)


def test_no_frames_is_an_error_not_a_perfect_score(exported):
    from llm4seg.errors import InputSpecError

    out, _ = exported
    with pytest.raises(InputSpecError, match="no frames"):
        probs_from_frames(load_backend(out / "model.onnx"), [])


def test_check_refuses_outside_the_bounds_and_names_the_artifact(exported):
    out, _ = exported
    frames = [np.full((64, 64, 3), v, np.uint8) for v in (30, 120, 220)]
    with load_backend(out / "model.onnx") as backend:
        probs = probs_from_frames(backend, frames)
    comparator = Comparator(frames, [1.0 - p for p in probs], threshold=0.5)  # the opposite as the reference
    with pytest.raises(ExportError, match=r"model\.onnx fails its gate .* probability error"):
        comparator.check(load_backend(out / "model.onnx"), tolerance_for("fp32"))
    backend = load_backend(out / "model.onnx")
    _, stats = Comparator(frames, probs, threshold=0.5).check(backend, tolerance_for("fp32"))
    # Exact: the same graph, session options, inputs and CPU in one process (onnxruntime's CPU
    # kernels are deterministic run to run on a machine, whichever x86-64 it is).
    assert stats["dice_agreement"] == 1.0 and stats["max_abs_err"] == 0.0 and not backend.loaded  # closed after
    assert stats["gate"]["max_abs_err_max"] == tolerance_for("fp32").max_abs


def _inject(monkeypatch, change):
    """Every manifest entry the export builds gets `change` (a fault the gate must see)."""
    from llm4seg.export import job

    real = job.graph_entry

    def faulty(*args, **kwargs):
        entry = real(*args, **kwargs)
        change(entry)
        return entry

    monkeypatch.setattr(job, "graph_entry", faulty)


INJECTIONS = {
    # A manifest mean shifted by 1.5 (what the earlier test injected).
    "mean-shift": lambda e: e["preprocess"].update(mean=[m + 1.5 for m in e["preprocess"]["mean"]]),
    # The model fed BGR while it was trained on RGB: visible only on frames whose channels differ.
    "colour-swap": lambda e: e["inputs"][0].update(color="BGR"),
    # Frames enlarged with nearest instead of linear: visible only on frames smaller than the model.
    "resize-rule": lambda e: e["preprocess"]["resize"].update(up="nearest"),
}


@pytest.mark.parametrize("fault", list(INJECTIONS))
def test_each_injected_contract_fault_fails_its_own_export_gate(fault, trained_checkpoint, synthetic_folder, tmp_path,
                                                                monkeypatch):
    """A manifest entry whose contract differs from training's fails its own gate: the gate feeds the
    frames through the Segmenter of that entry, at native, reduced and mixed sizes, some tinted."""
    from llm4seg.export.pipeline import ExportOptions, export_checkpoint

    _inject(monkeypatch, INJECTIONS[fault])
    with pytest.raises(ExportError, match=r"model\.onnx fails its gate"):
        export_checkpoint(trained_checkpoint, ExportOptions(out=tmp_path / "a", data=str(synthetic_folder),
                                                            parity_images=8, frames=False), log=lambda s: None)
    assert not (tmp_path / "a").exists()  # nothing kept
