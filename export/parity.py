"""Parity of an ONNX artifact with the checkpoint it came from, on real or synthetic images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm4seg.evaluate import predict_probs
from llm4seg.metrics import image_metrics


def normalised_batch(images_u8: np.ndarray, cfg) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float32 (N, 3, S, S), as the runtime feeds the graph."""
    x = images_u8.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    x = (x - np.array(cfg.mean, np.float32)[None, :, None, None]) / np.array(cfg.std, np.float32)[None, :, None, None]
    return x / 255.0 if cfg.paper_double_scaling else x


def ort_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_probs(path_or_session, x: np.ndarray, batch_size: int = 8) -> np.ndarray:
    session = ort_session(path_or_session) if isinstance(path_or_session, (str, Path)) else path_or_session
    out = [session.run(["prob"], {"image": x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(out)[:, 0]


def agreement(reference: np.ndarray, candidate: np.ndarray, threshold: float,
              masks: np.ndarray | None = None) -> dict[str, Any]:
    """Max abs error of probabilities and mean Dice between the two binary masks (and vs ground truth)."""
    dice = [image_metrics(c, r > threshold, threshold)["dice"] for r, c in zip(reference, candidate)]
    out: dict[str, Any] = {"n": len(reference), "max_abs_err": float(np.abs(reference - candidate).max()),
                           "dice_agreement": float(np.mean(dice)), "min_dice_agreement": float(np.min(dice))}
    if masks is not None:
        out["dice_vs_truth"] = float(np.mean([image_metrics(c, m, threshold)["dice"] for c, m in zip(candidate, masks)]))
        out["reference_dice_vs_truth"] = float(np.mean([image_metrics(r, m, threshold)["dice"] for r, m in zip(reference, masks)]))
    return out


def torch_reference(model, images_u8: np.ndarray) -> np.ndarray:
    return predict_probs(model, images_u8, torch.device("cpu"), batch_size=8)
