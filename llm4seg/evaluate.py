"""Predict and score a model on in-memory datasets: per-image metrics, summaries, overlays."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from llm4seg.contract import FrameContract, prob_at_size
from llm4seg.errors import CheckpointError
from llm4seg.data.augment import normalise
from llm4seg.data.datasets import ArrayDataset
from llm4seg.fileio import atomic_path, write_json_atomic
from llm4seg.metrics import METRIC_NAMES, image_metrics, summarise


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, images_u8: np.ndarray | torch.Tensor, device: torch.device,
                  batch_size: int = 16, amp: bool = False) -> np.ndarray:
    """images uint8 (N, S, S, 3) -> probabilities float32 (N, S, S)."""
    contract = FrameContract.from_model_config(model.config)
    model.eval()
    out = []
    for i in range(0, len(images_u8), batch_size):
        chunk = images_u8[i:i + batch_size]
        x = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(chunk))
        x = x.to(device).permute(0, 3, 1, 2)
        x = normalise(x, contract)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = model(x)
        out.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
    return np.concatenate(out)


def score(probs: np.ndarray, masks: np.ndarray, stems: list[str], threshold: float = 0.5) -> list[dict[str, Any]]:
    """Per-image metrics (IoU, Dice, SE, PC, F1, ACC, HD95) of probabilities against masks, with stems."""
    return [{"stem": s, **image_metrics(p, m, threshold)} for p, m, s in zip(probs, masks, stems)]


def evaluate_model(model: torch.nn.Module, data: ArrayDataset, device: torch.device, batch_size: int = 16,
                   amp: bool = False) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Predict `data` with the model and score every image.

    Returns:
        (per-image metric rows, the probabilities (N, S, S)).
    """
    probs = predict_probs(model, data.images, device, batch_size, amp)
    bad = int((~np.isfinite(probs)).sum())
    if bad:  # NaN probabilities score as empty masks: Dice 0 without a word
        raise CheckpointError(f"the model gave {bad} non-finite probabilities (NaN or inf) on {data.name}",
                              hint="its weights hold NaN or inf values: train again (or resume from an earlier state)")
    return score(probs, data.masks, data.stems, model.config.threshold), probs


def add_hd95_mm(rows: list[dict[str, Any]], probs: np.ndarray, data: ArrayDataset, threshold: float) -> int:
    """Add `hd95_mm` to the rows of DICOM images with a physical pixel size: on the image's own grid
    (the prediction brought back by the contract's rule, then through the mask stage with the
    image's geometry: its tissue region bounds the mask, as in every runtime door), against the mask
    file binarised with the dataset's rule. Returns how many rows got one (the others: no size known)."""
    from llm4seg.data.decode import read_mask_raw
    from llm4seg.dicom import DicomSource, is_dicom_file
    from llm4seg.mask_stage import MaskStage
    from llm4seg.metrics import hd95_mm

    done = 0
    for row, prob in zip(rows, probs):
        files = data.files.get(row["stem"])
        if not files or not data.mask_encoding or not is_dicom_file(files[0]):
            continue
        geometry = DicomSource(files[0]).geometry
        mask, _ = read_mask_raw(files[1])
        if geometry.mm_per_px is None or mask is None or mask.shape[:2] != geometry.shape_hw:
            continue
        pred = MaskStage(threshold, geometry=geometry).step(prob_at_size(prob, mask.shape[:2])).mask
        mm_x, mm_y = geometry.mm_per_px
        row["hd95_mm"] = hd95_mm(pred.astype(bool), mask > data.mask_encoding["threshold"], (mm_y, mm_x))
        done += 1
    return done


TRUTH_BGR, PREDICTION_BGR = (0, 200, 0), (0, 255, 255)  # green and yellow


def overlay(image_rgb: np.ndarray, pred: np.ndarray, target: np.ndarray, caption: str = "") -> np.ndarray:
    """Ground truth contour green, prediction contour yellow (red vanishes on endoscopy tissue), both
    with a dark halo, on the RGB image; the legend and the caption (e.g. the per-image Dice) in a dark
    strip below the image, so they never cover a lesion however small or wherever it is. Returns BGR
    for writing. Small images are upscaled first (nearest) so the outlines and text stay readable."""
    scale = max(1, int(np.ceil(256 / max(image_rgb.shape[:2]))))
    if scale > 1:
        size = (image_rgb.shape[1] * scale, image_rgb.shape[0] * scale)
        image_rgb = cv2.resize(image_rgb, size, interpolation=cv2.INTER_NEAREST)
        pred, target = (cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) for m in (pred, target))
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 300))
    for mask, colour in ((target, TRUTH_BGR), (pred, PREDICTION_BGR)):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, (0, 0, 0), thickness + 2)  # a dark halo: visible on any tissue
        cv2.drawContours(canvas, contours, -1, colour, thickness)
    return _with_legend_strip(canvas, caption, thickness)


def _with_legend_strip(canvas: np.ndarray, caption: str, thickness: int) -> np.ndarray:
    """The image above a dark strip holding the legend and the caption (the image's pixels untouched)."""
    font = max(0.4, max(canvas.shape[:2]) / 900)
    lines = [("truth", TRUTH_BGR), ("prediction", PREDICTION_BGR)] + ([(caption, (255, 255, 255))] if caption else [])
    step = int(22 * font / 0.5)
    width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, font, thickness)[0][0] for t, _ in lines) + 16
    out_w = max(canvas.shape[1], width)
    out = np.full((canvas.shape[0] + step * len(lines) + step // 2, out_w, 3), 30, np.uint8)
    out[:canvas.shape[0], :canvas.shape[1]] = canvas
    for i, (text, colour) in enumerate(lines):
        cv2.putText(out, text, (8, canvas.shape[0] + step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, font, colour,
                    thickness, cv2.LINE_AA)
    return out


def native_overlay(data: ArrayDataset, i: int, prob: np.ndarray, threshold: float, caption: str) -> np.ndarray:
    """The overlay at the image's own size when its files are known (the prediction upsampled
    linearly, the mask binarised with the dataset's rule), else at the model's resolution."""
    from llm4seg.data.decode import read_image_rgb, read_mask_raw

    files = data.files.get(data.stems[i])
    if files and data.mask_encoding:
        image, _ = read_image_rgb(files[0])
        mask, _ = read_mask_raw(files[1])
        if image is not None and mask is not None:
            full = prob_at_size(prob, image.shape[:2])  # the frame contract's way back to the image's size
            return overlay(image, full > threshold, mask > data.mask_encoding["threshold"], caption)
    return overlay(data.images[i], prob > threshold, data.masks[i], caption)


def write_report(out: Path, rows: list[dict[str, Any]], probs: np.ndarray, data: ArrayDataset,
                 threshold: float, n_examples: int = 4) -> dict[str, Any]:
    """per_image.csv, summary.json, overlays/{worst,best}_*.png; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "per_image.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            physical = ["hd95_mm"] if any("hd95_mm" in r for r in rows) else []
            writer = csv.DictWriter(f, fieldnames=["stem", *METRIC_NAMES, *physical])
            writer.writeheader()
            writer.writerows(rows)
    order = np.argsort([r["dice"] for r in rows], kind="stable")
    picks = [("worst", i) for i in order[:n_examples]] + [("best", i) for i in order[::-1][:n_examples]]
    (out / "overlays").mkdir(exist_ok=True)
    for tag, i in picks:
        caption = f"{data.stems[i]}: Dice {rows[i]['dice']:.3f} (at {probs.shape[-1]} px)"
        img = native_overlay(data, i, probs[i], threshold, caption)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in data.stems[i])
        cv2.imwrite(str(out / "overlays" / f"{tag}_{safe}.png"), img)
    summary = {"n": len(rows), "threshold": threshold, "dataset": data.name,
               "empty_mask_rule": "0/0 ratios score 1 when prediction and mask are both empty, else 0; "
                                  "HD95 is 0 if both empty, the image diagonal if one is",
               "metrics": summarise(rows)}
    with_mm = [r for r in rows if "hd95_mm" in r]
    if with_mm:  # only the images whose files give a pixel size (DICOM); n says how many
        summary["metrics"]["hd95_mm"] = {**summarise(with_mm, ("hd95_mm",))["hd95_mm"], "n": len(with_mm),
                                         "grid": "each image's own pixels and DICOM pixel size"}
    try:
        write_json_atomic(out / "summary.json", summary, strict=True)  # strict JSON: never a bare NaN
    except ValueError as exc:
        raise CheckpointError(f"a metric of {data.name} came out NaN or infinite ({exc}); summary.json was not written",
                              hint="a probability or a pixel size is not finite: check the model and the images") from None
    return summary
