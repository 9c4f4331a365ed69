"""The frame-to-tensor contract, its one owner: how a frame (or a dataset image) becomes the model's
input tensor and how the model's output becomes a mask at the frame's size.

Training's data loading, eval, the export's gates and manifest, the runtime's Segmenter, the ONNX
frames graphs (export/frames_graph.py) and the SDK configs all read it from here. Torch-free
(numpy and OpenCV), so the runtime uses it as it is.

The rule, step by step, for a uint8 frame of H x W pixels in the model's colour order:
1. resize each axis on its own to `image_size`: `area` (the mean over the source pixels each output
   pixel covers) where the axis shrinks, `linear` (half-pixel centres, edges clamped: OpenCV's
   INTER_LINEAR) where it grows, untouched where equal; computed in float32, then rounded to
   8 bits (ties to even), as training stores its resized images;
2. x = a * pixel + b per channel, with a = scale / std and b = -mean / std, both divided by 255
   once more with the authors' `paper_double_scaling`;
3. the model's probabilities (image_size x image_size) are resized back to H x W with `linear` in
   both directions, and the mask is prob > threshold.
`axis_weights` is the definition of step 1 as a matrix; `resize_image` computes it with OpenCV and
the frames graph with CumSum and Gather ops, and tests hold both to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from llm4seg.errors import InputSpecError

RESIZE_RULES = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
COLORS = ("RGB", "BGR")
RESIZE_DOWN, RESIZE_UP = "area", "linear"  # the rule every model is trained with (training's loader too)


@dataclass(frozen=True)
class FrameContract:
    """How frames become the model's input and its output a mask (see the module's text).

    Args:
        image_size: the model's square input size S.
        mean, std: per-channel normalisation, in units of `scale` * pixel (ImageNet's by default).
        threshold: mask = probability > threshold.
        color: the channel order the model was trained on (datasets are read as RGB).
        scale: pixel -> [0, 1] factor (1/255 for 8-bit frames).
        paper_double_scaling: the authors' extra /255 after normalising.
        resize_down, resize_up: the per-axis rule where an axis shrinks / grows.
        mask_resize: how probabilities go back to the frame's size (both directions).
        bit_depth: bits per channel of the frames the model was trained on.
    """

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    threshold: float = 0.5
    color: str = "RGB"
    scale: float = 1 / 255.0
    paper_double_scaling: bool = False
    resize_down: str = RESIZE_DOWN
    resize_up: str = RESIZE_UP
    mask_resize: str = "linear"
    bit_depth: int = 8

    def __post_init__(self) -> None:
        bad = [f"{k}={v!r}" for k, v, ok in (
            ("resize.down", self.resize_down, self.resize_down in RESIZE_RULES),
            ("resize.up", self.resize_up, self.resize_up in RESIZE_RULES),
            ("mask_resize", self.mask_resize, self.mask_resize in RESIZE_RULES),
            ("color", self.color, self.color in COLORS),
            ("std", self.std, len(self.std) == len(self.mean) and all(s > 0 for s in self.std)))
            if not ok]
        if bad:
            raise InputSpecError(f"the frame contract has {', '.join(bad)}, which this version does not know",
                                 hint=f"resize rules: {sorted(RESIZE_RULES)}; color: RGB or BGR; one std > 0 per mean")

    # -- where it comes from, where it is written --------------------------------------------
    @classmethod
    def from_model_config(cls, cfg: Any) -> "FrameContract":
        """The contract of a model config (a ModelConfig or its dict): what training uses."""
        get = cfg.get if isinstance(cfg, Mapping) else (lambda k, d=None: getattr(cfg, k, d))
        return cls(image_size=int(get("image_size")), mean=tuple(float(v) for v in get("mean")),
                   std=tuple(float(v) for v in get("std")), threshold=float(get("threshold", 0.5)),
                   paper_double_scaling=bool(get("paper_double_scaling", False)))

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's `preprocess` table (the input's colour and the threshold live beside it)."""
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std),
                "paper_double_scaling": self.paper_double_scaling,
                "resize": {"down": self.resize_down, "up": self.resize_up, "per_axis": True, "rounding": "uint8"},
                "mask_resize": self.mask_resize, "bit_depth": self.bit_depth}

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> "FrameContract":
        """The contract a manifest entry records (values checked; unknown rules refused)."""
        pre = entry["preprocess"]
        resize = pre.get("resize", {})
        if not isinstance(resize, Mapping):  # manifests of llm4seg 0.1 wrote one sentence
            resize = {}
        return cls(image_size=int(entry["image_size"]), mean=tuple(pre["mean"]), std=tuple(pre["std"]),
                   threshold=float(entry["threshold"]), color=_model_color(entry),
                   scale=float(pre.get("scale", 1 / 255.0)),
                   paper_double_scaling=bool(pre.get("paper_double_scaling", False)),
                   resize_down=resize.get("down", "area"), resize_up=resize.get("up", "linear"),
                   mask_resize=pre.get("mask_resize", "linear"), bit_depth=int(pre.get("bit_depth", 8)))

    # -- step 1: resize ------------------------------------------------------------------------
    def resize_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, C) -> uint8 (S, S, C) by the per-axis rule, rounded to 8 bits."""
        return resize_square(image, self.image_size, self.resize_down, self.resize_up)

    # -- step 2: normalise ---------------------------------------------------------------------
    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b), float32 per channel: the model's input is a * pixel + b."""
        extra = 1 / 255.0 if self.paper_double_scaling else 1.0
        std, mean = np.asarray(self.std, np.float64), np.asarray(self.mean, np.float64)
        return (self.scale / std * extra).astype(np.float32), (-mean / std * extra).astype(np.float32)

    def normalise(self, resized: np.ndarray) -> np.ndarray:
        """uint8 (S, S, C) -> float32 (C, S, S), the model's input for one image."""
        a, b = self.affine()
        return (resized.astype(np.float32) * a + b).transpose(2, 0, 1)

    def tensor_from_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, C) in the model's colour order -> float32 (C, S, S)."""
        return self.normalise(self.resize_image(image))

    # -- step 3: back to the frame -------------------------------------------------------------
    def prob_at_size(self, prob: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
        """Probabilities (S, S) -> float32 (H, W) by `mask_resize` (linear both ways by default)."""
        return prob_at_size(prob, shape_hw, self.mask_resize)

    def mask_from_prob(self, prob: np.ndarray) -> np.ndarray:
        """Probabilities -> uint8 {0, 1} mask."""
        return (prob > self.threshold).astype(np.uint8)


def resize_square(image: np.ndarray, size: int, down: str = RESIZE_DOWN, up: str = RESIZE_UP) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 (size, size, C): each axis on its own, `down` where it shrinks and
    `up` where it grows, in float32, rounded to 8 bits (ties to even). Step 1 of the contract."""
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    x = image.astype(np.float32)
    x = _resize_axis(x, size, 1, down if image.shape[1] > size else up)
    x = _resize_axis(x, size, 0, down if image.shape[0] > size else up)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(size, size, -1)


def prob_at_size(prob: np.ndarray, shape_hw: tuple[int, int], rule: str = "linear") -> np.ndarray:
    """Probabilities (S, S) -> float32 (H, W) with `rule` in both directions (step 3 of the contract)."""
    h, w = shape_hw
    if prob.shape == (h, w):
        return prob.astype(np.float32, copy=False)
    return cv2.resize(prob.astype(np.float32, copy=False), (w, h), interpolation=RESIZE_RULES[rule])


def _model_color(entry: Mapping[str, Any]) -> str:
    """A frames graph's model colour is in its `frames` table; a float graph's input is the model's."""
    frames = entry.get("frames")
    return frames.get("model_color", "RGB") if isinstance(frames, Mapping) else entry["inputs"][0].get("color", "RGB")


def _resize_axis(x: np.ndarray, n: int, axis: int, rule: str) -> np.ndarray:
    """float32 (H, W[, C]) resized along one axis (0: rows, 1: columns) to n pixels with `rule`."""
    h, w = x.shape[:2]
    if (h, w)[axis] == n:
        return x
    out = cv2.resize(x, (n, h) if axis == 1 else (w, n), interpolation=RESIZE_RULES[rule])
    return out if out.ndim == x.ndim else out[..., None]  # OpenCV drops a single channel


def axis_weights(src: int, dst: int, rule: str) -> np.ndarray:
    """The rule of one axis as a float64 (dst, src) matrix: resized = W @ pixels along that axis.

    'area': each output pixel i covers source [i*s, (i+1)*s) with s = src/dst and averages what it
    covers (fractional pixels weighted by the part covered). 'linear': output i samples the source
    at (i + 0.5) * s - 0.5, clamped to [0, src - 1], between its two neighbours.
    """
    s = src / dst
    i = np.arange(dst, dtype=np.float64)[:, None]
    j = np.arange(src, dtype=np.float64)[None, :]
    if rule == "area":
        return np.maximum(0.0, np.minimum(j + 1, (i + 1) * s) - np.maximum(j, i * s)) / s
    if rule == "linear":
        p = np.clip((i + 0.5) * s - 0.5, 0, src - 1)
        return np.maximum(0.0, 1 - np.abs(p - j))
    raise InputSpecError(f"resize rule {rule!r} has no weight matrix", hint="use 'area' or 'linear'")


__all__ = ["COLORS", "FrameContract", "RESIZE_DOWN", "RESIZE_RULES", "RESIZE_UP", "axis_weights", "prob_at_size", "resize_square"]
