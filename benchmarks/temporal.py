"""Temporal stability and the per-frame quality signal, on moving sequences with known masks.

Synthetic sequences (`--data`): each is built from held-out images and their masks: a smooth
random walk of shifts, a slow zoom, per-frame speckle (multiplicative gamma noise) and additive
noise, a brief occlusion (a dark band over part of the frame for 3 frames), and a cut to another
image half-way. The mask moves with the image, so every frame's Dice is known. `--steps 1,2,4`
keeps every k-th frame as well (a lower frame rate: real frame steps are larger than this walk).
Real sequences (`--video DIR`): DIR/<sequence>/images/* and DIR/<sequence>/masks/* in name order
(a per-frame annotated endoscopy or ultrasound set kept outside the repository, read as
../shared/datasets is read). The artifact segments every frame once; each smoothing is then applied
to the same probability maps (paired comparison).

Reports, per frame step and smoothing: mean per-frame Dice against the known masks, flicker
(1 - mean frame-to-frame Dice), the fraction of frame pairs where a mask appears or vanishes, the
filter's added time per frame and its delay (0 frames: every filter is causal). Then, for the
unfiltered masks: the rank correlation of confidence with per-frame Dice, and of a temporal signal
(confidence minus the flow filter's disagreement between the warped previous map and the current
one), and how many of the worst 10 % of frames (by Dice) the low-confidence flag catches, with the
threshold calibrated on the first half and reported on the second half. `--cost` times each
filter per frame at 320x240, 560x450 (BUSI) and 1920x1080. `--cine FILE` measures flicker on a
DICOM cine loop instead.

    python -m benchmarks.temporal --engine ART/model.onnx --data ../shared/datasets/busi --split val1 --steps 1,2,4
    python -m benchmarks.temporal --engine ART/model.onnx --video ../shared/video/CVC-ColonDB --steps 1,2
    python -m benchmarks.temporal --cost
    python -m benchmarks.temporal --engine ART/model.onnx --cine examples_ybr_color.dcm
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import cv2
import numpy as np

from llm4seg.runtime import Segmenter
from llm4seg.mask_stage import MaskStage
from llm4seg.metrics import mask_dice
from llm4seg.smoothing import smoother_from_text

SMOOTHINGS = {"none": "none", "ema 0.5": "ema:0.5", "ema 0.3": "ema:0.3", "median 3": "median:3",
              "flow 0.5": "flow:0.5", "flow 0.3": "flow:0.3"}  # name -> the --smooth text


def _read_pair(data: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    image = next(p for p in (data / "images").glob(f"{glob.escape(stem)}.*"))
    mask = next(p for p in (data / "masks").glob(f"{glob.escape(stem)}.*"))
    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    m = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
    return bgr, (m > 127).astype(np.uint8) if m.max() > 1 else m.astype(np.uint8)


def moving_sequence(pairs: list[tuple[np.ndarray, np.ndarray]], frames: int, rng: np.random.Generator,
                    side: int = 256) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """BGR frames and their masks: two scenes (a cut half-way), each moving as described above."""
    out_frames, out_masks = [], []
    occlusion = int(rng.integers(frames // 8, frames // 2 - 3))
    for scene, (bgr, mask) in enumerate(pairs):
        bgr = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(np.asarray(mask, np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
        shift = np.zeros(2)
        for t in range(frames // 2):
            shift = np.clip(shift + rng.normal(0, 1.2, 2), -0.08 * side, 0.08 * side)
            zoom = 1.0 + 0.06 * np.sin(2 * np.pi * t / 40 + scene)
            warp = cv2.getRotationMatrix2D((side / 2, side / 2), 0.0, zoom)
            warp[:, 2] += shift
            img = cv2.warpAffine(bgr, warp, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            m = cv2.warpAffine(mask, warp, (side, side), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
            speckle = rng.gamma(8.0, 1 / 8.0, img.shape[:2])[..., None]
            noisy = img.astype(np.float32) * speckle + rng.normal(0, 6, img.shape)
            if scene == 0 and occlusion <= t < occlusion + 3:
                noisy[:, side // 3: side // 3 + side // 4] *= 0.15
            out_frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
            out_masks.append(m)
    return out_frames, out_masks


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Per-frame Dice (1.0 when both are empty, as the evaluation's per-image rule)."""
    d = mask_dice(pred, truth)
    return 1.0 if d is None else d


def stage_for(seg: Segmenter, spec: str) -> MaskStage:
    """A fresh mask stage of the artifact with the smoothing `spec` (the --smooth text)."""
    return MaskStage.for_entry(seg.threshold, seg.entry.quality, smoother_from_text(spec))


def smoothing_table(seg: Segmenter, sequences: list[tuple[list, list]]) -> tuple[dict, list]:
    """Each smoothing over the same probability maps of every sequence; (table, per-frame rows of
    (sequence, confidence, temporal signal, Dice) for the unfiltered masks)."""
    rows = {name: {"dice": [], "flicker": [], "toggle": [], "ms": []} for name in SMOOTHINGS}
    per_frame = []
    for s, (seq, truth) in enumerate(sequences):
        probs = seg.segment(seq, binary=False)
        disagreement = _flow_disagreement(seg, probs, seq)
        for name, spec in SMOOTHINGS.items():
            stream = stage_for(seg, spec)
            t0 = time.perf_counter()
            results = [stream.step(p, f[..., ::-1]) for p, f in zip(probs, seq)]
            rows[name]["ms"].append((time.perf_counter() - t0) * 1000 / len(seq))
            dices = [dice(r.mask, t) for r, t in zip(results, truth)]
            summary = stream.summary()
            rows[name]["dice"].append(float(np.mean(dices)))
            rows[name]["flicker"].append(summary["flicker"] if summary["flicker"] is not None else 0.0)
            rows[name]["toggle"].append(summary["toggle_fraction"] or 0.0)
            if name == "none":
                per_frame += [(s, r.confidence, r.confidence - (d or 0.0), dc)
                              for r, d, dc in zip(results, disagreement, dices)]
    base_ms, base_dice = float(np.mean(rows["none"]["ms"])), float(np.mean(rows["none"]["dice"]))
    base_flicker = max(float(np.mean(rows["none"]["flicker"])), 1e-9)
    table = {name: {"dice": float(np.mean(r["dice"])), "flicker": float(np.mean(r["flicker"])),
                    "toggle_fraction": float(np.mean(r["toggle"])), "delay_frames": 0,
                    "added_ms_per_frame": float(np.mean(r["ms"])) - base_ms,
                    "dice_minus_none_points": 100 * (float(np.mean(r["dice"])) - base_dice),
                    "flicker_ratio_to_none": float(np.mean(r["flicker"])) / base_flicker}
             for name, r in rows.items()}
    return table, per_frame


def _flow_disagreement(seg: Segmenter, probs: list, frames: list) -> list[float | None]:
    """Per frame: mean |p_t - warp(p_{t-1})| where the motion is trusted (the flow filter's evidence)."""
    from llm4seg.smoothing import Smoother

    flow, out = Smoother("flow", alpha=1.0), []  # alpha 1: no smoothing, only the warp and its disagreement
    for p, f in zip(probs, frames):
        flow.update(p, cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
        out.append(flow.disagreement)
    return out


def run(engine: str, data: Path, split: str, sequences: int, frames: int, seed: int, steps: list[int]) -> dict:
    """The synthetic measurement (see the module's docstring) at each frame step; the JSON report."""
    stems = [line.strip() for line in (data / "splits" / f"{split}.txt").read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(stems), size=(sequences, 2), replace=False if len(stems) >= 2 * sequences else True)
    seg = Segmenter(engine)
    built = [moving_sequence([_read_pair(data, stems[a]), _read_pair(data, stems[b])], frames * max(steps), rng)
             for a, b in picks]
    report = {"engine": engine, "data": str(data), "split": split, "sequences": sequences, "frames": frames, "seed": seed,
              "threshold": seg.threshold, "by_step": {},
              "manifest_low_confidence": [seg.low_confidence, seg.low_confidence_source]}
    for k in steps:  # every k-th frame, `frames` frames each: the same scenes at 1/k of the frame rate
        table, per_frame = smoothing_table(seg, [(f[::k][:frames], t[::k][:frames]) for f, t in built])
        report["by_step"][str(k)] = {"smoothing": table, "quality": quality_ranking(per_frame, sequences,
                                                                                     seg.low_confidence)}
    return report


def read_video_sets(folder: Path) -> list[tuple[list, list]]:
    """(BGR frames, 0/1 masks) of each sequence folder (images/ and masks/ in name order)."""
    out = []
    for sequence in sorted(p for p in folder.iterdir() if (p / "images").is_dir() and (p / "masks").is_dir()):
        images, masks = sorted((sequence / "images").iterdir()), sorted((sequence / "masks").iterdir())
        frames = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in images]
        truth = [(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127).astype(np.uint8) for p in masks]
        out.append((frames, truth))
    return out


def run_video(engine: str, folder: Path, steps: list[int]) -> dict:
    """The same table on real sequences with a mask per frame (no synthetic motion)."""
    seg, sets = Segmenter(engine), read_video_sets(folder)
    report = {"engine": engine, "video": str(folder), "sequences": len(sets),
              "frames": sum(len(f) for f, _ in sets), "by_step": {}}
    for k in steps:
        table, per_frame = smoothing_table(seg, [(f[::k], t[::k]) for f, t in sets])
        report["by_step"][str(k)] = {"smoothing": table, "quality": quality_ranking(per_frame, len(sets),
                                                                                     seg.low_confidence)}
    return report


def cost(rounds: int = 5) -> dict:
    """Each filter's ms per frame at three frame sizes, in turns (textured frames moving 4 px a frame)."""
    from llm4seg.mask_stage import MaskStage

    sizes = {"320x240": (240, 320), "560x450 (BUSI)": (450, 560), "1920x1080": (1080, 1920)}
    rng = np.random.default_rng(0)
    out = {}
    for label, (h, w) in sizes.items():
        base = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 3).astype(np.uint8)
        frames = [np.repeat(np.roll(base, 4 * t, axis=1)[..., None], 3, axis=2) for t in range(12)]
        probs = [rng.uniform(0, 1, (h, w)).astype(np.float32) for _ in frames]
        times = {name: [] for name in SMOOTHINGS}
        for _ in range(rounds):
            for name, spec in SMOOTHINGS.items():
                stage = MaskStage(0.5, smoother=smoother_from_text(spec))
                t0 = time.perf_counter()
                for p, f in zip(probs, frames):
                    stage.step(p, f)
                times[name].append((time.perf_counter() - t0) * 1000 / len(frames))
        none = float(np.median(times["none"]))
        out[label] = {name: float(np.median(t)) - none for name, t in times.items() if name != "none"}
        out[label]["mask stage without smoothing (ms)"] = none
    return out


def _rank(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks


def quality_ranking(per_frame: list[tuple[int, float, float, float]], sequences: int, shipped: float) -> dict:
    """Spearman correlation of confidence (and of the temporal signal) with Dice, and the worst-10 %
    catch rate of the flag, on the second half of the sequences: with the artifact's own threshold
    (`shipped`, calibrated by the export on clean held-out images) and with the 15th percentile of
    the first half's."""
    seq = np.array([r[0] for r in per_frame])
    conf = np.array([r[1] for r in per_frame])
    temporal = np.array([r[2] for r in per_frame])
    d = np.array([r[3] for r in per_frame])
    first, second = seq < sequences // 2, seq >= sequences // 2
    calibrated = float(np.percentile(conf[first], 15))
    held_conf, held_dice = conf[second], d[second]
    worst = held_dice <= np.percentile(held_dice, 10)
    rho = float(np.corrcoef(_rank(held_conf), _rank(held_dice))[0, 1])
    rho_temporal = float(np.corrcoef(_rank(temporal[second]), _rank(held_dice))[0, 1])
    out = {"frames_reported": int(second.sum()), "spearman_confidence_vs_dice": rho,
           "spearman_temporal_signal_vs_dice": rho_temporal, "calibrated_threshold_first_half": calibrated}
    for name, thr in (("calibrated", calibrated), ("shipped", shipped)):
        flagged = held_conf < thr
        out[f"{name}_flagged_fraction"] = float(flagged.mean())
        out[f"{name}_worst10_caught"] = float(flagged[worst].mean())
        out[f"{name}_dice_flagged_vs_not"] = [float(held_dice[flagged].mean()) if flagged.any() else None,
                                             float(held_dice[~flagged].mean()) if (~flagged).any() else None]
    return out


def cine_frames(path: Path) -> list[np.ndarray]:
    """BGR frames of a multi-frame DICOM cine (pydicom converts YBR to RGB; needs pydicom and the
    pylibjpeg codecs, not dependencies of llm4seg: issue 35 brings DICOM in)."""
    import pydicom

    pixels = pydicom.dcmread(str(path)).pixel_array
    frames = pixels if pixels.ndim == 4 else pixels[..., None].repeat(3, -1)
    return [np.ascontiguousarray(f[..., ::-1]) for f in frames]


def run_cine(engine: str, path: Path) -> dict:
    """Flicker and confidence per smoothing on a real cine loop (no ground truth)."""
    frames = cine_frames(path)
    seg = Segmenter(engine)
    probs = seg.segment(frames, binary=False)
    table = {}
    for name, spec in SMOOTHINGS.items():
        stream = stage_for(seg, spec)
        for p, f in zip(probs, frames):
            stream.step(p, f[..., ::-1])
        summary = stream.summary()
        table[name] = {k: summary[k] for k in ("frame_to_frame_dice", "flicker", "toggle_fraction", "smoothing_resets",
                                               "flag_counts")}
        table[name]["confidence_mean"] = summary["confidence"]["mean"]
    return {"engine": engine, "cine": path.name, "frames": len(frames), "size_hw": list(frames[0].shape[:2]),
            "smoothing": table}


def main() -> None:
    """Command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", help="an exported artifact (ART/model.onnx)")
    parser.add_argument("--data", type=Path, help="a dataset folder (images/, masks/, splits/)")
    parser.add_argument("--split", default="val1")
    parser.add_argument("--sequences", type=int, default=24)
    parser.add_argument("--frames", type=int, default=60, help="frames per sequence (two scenes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", default="1", help="frame steps, e.g. 1,2,4 (every k-th frame)")
    parser.add_argument("--video", type=Path, help="instead: real sequences with a mask per frame")
    parser.add_argument("--cost", action="store_true", help="instead: each filter's ms per frame at three sizes")
    parser.add_argument("--cine", type=Path, help="instead: a multi-frame DICOM cine (flicker only, no ground truth)")
    args = parser.parse_args()
    steps = [int(k) for k in args.steps.split(",")]
    if args.cost:
        report = cost()
    elif args.cine:
        report = run_cine(args.engine, args.cine)
    elif args.video:
        report = run_video(args.engine, args.video, steps)
    else:
        report = run(args.engine, args.data, args.split, args.sequences, args.frames, args.seed, steps)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
