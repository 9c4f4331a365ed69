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

Before step 1, a frame as a device or a caller hands it over (BGR, RGB or grey; uint8, uint16 of a
stated bit depth, or float in [0, 1]) becomes uint8 RGB by `rgb_from_frame`, and then the colour
order the model (or a frames graph) takes by `image_in_color`: every runner, the DICOM source and
the export's gates convert frames through these two functions, never their own.
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
LAYOUTS = ("bgr", "rgb", "gray")  # the channel orders frames may arrive in
# Frames above this are refused before any resize (a 40000 x 40000 frame took 83 s): 8K video is 33 M.
MAX_FRAME_PIXELS = 100_000_000


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

    # -- frames as they arrive -----------------------------------------------------------------
    def model_image(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB (from `rgb_from_frame`) -> the same pixels in the model's colour order."""
        return image_in_color(rgb, self.color)


def check_layout(layout: str, bit_depth: int | None) -> None:
    """Refuse a frame layout or bit depth that `rgb_from_frame` does not know (said once, up front)."""
    if layout not in LAYOUTS:
        raise InputSpecError(f"layout {layout!r} is not known", hint=f"choose one of {', '.join(LAYOUTS)}")
    if bit_depth is not None and (not isinstance(bit_depth, int) or isinstance(bit_depth, bool)
                                  or not 8 <= bit_depth <= 16):
        raise InputSpecError(f"bit_depth {bit_depth!r} is not an integer from 8 to 16",
                             hint="e.g. bit_depth=12 for 12-bit ultrasound stored as uint16 (0-4095)")


def uint8_from_frame(frame: np.ndarray, bit_depth: int | None) -> np.ndarray:
    """Any supported frame dtype -> uint8 0-255. Integer frames wider than 8 bits need their bit
    depth (12-bit ultrasound in uint16 is 0-4095): it is never guessed."""
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        if bit_depth is None or not 9 <= bit_depth <= 16:
            raise InputSpecError(f"a uint16 frame needs its bit depth (got bit_depth={bit_depth!r}); "
                                 f"this frame's maximum is {int(frame.max(initial=0))}",
                                 hint="pass bit_depth=12 for 0-4095 data, 16 for 0-65535, or convert frames to uint8")
        top = (1 << bit_depth) - 1
        if frame.max(initial=0) > top:
            raise InputSpecError(f"frame values reach {int(frame.max())}, above {top} for bit_depth={bit_depth}",
                                 hint="pass the bit depth the device really writes")
        return np.round(frame.astype(np.float32) * (255.0 / top)).astype(np.uint8)
    if frame.dtype in (np.float32, np.float64):
        if not np.isfinite(frame).all():
            raise InputSpecError(f"the frame holds {int((~np.isfinite(frame)).sum())} NaN or infinite value(s)",
                                 hint="check the capture or the conversion that produced the frame")
        if frame.min(initial=0) < 0 or frame.max(initial=0) > 1:
            raise InputSpecError(f"a float frame must hold values in [0, 1], got {frame.min():.3g}..{frame.max():.3g}",
                                 hint="scale it to [0, 1], or pass uint8")
        return np.round(frame * 255).astype(np.uint8)
    raise InputSpecError(f"frame dtype {frame.dtype} is not supported",
                         hint="pass uint8 (0-255), uint16 with bit_depth=, or float in [0, 1]")


def _check_frame_shape(frame: Any, layout: str) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
        raise InputSpecError(f"a frame must be an (H, W) or (H, W, C) array, got {getattr(frame, 'shape', type(frame))}",
                             hint="pass the array OpenCV returns from VideoCapture.read()")
    if frame.shape[0] * frame.shape[1] > MAX_FRAME_PIXELS:
        raise InputSpecError(f"the frame is {frame.shape[1]} x {frame.shape[0]} pixels, above the "
                             f"{MAX_FRAME_PIXELS:,} the runtime takes", hint="downscale frames at the source (capture "
                             "resolution); the model runs at its image_size anyway")
    if frame.size == 0 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputSpecError(f"the frame is empty (shape {frame.shape})",
                             hint="the source returned no pixels; check the capture before segmenting")
    # (C, H, W) with C first; but (1, W, 3) or (1, W, 4) is a one-row colour frame, not channel-first.
    one_row = frame.ndim == 3 and frame.shape[0] == 1 and frame.shape[2] in (3, 4)
    if frame.ndim == 3 and frame.shape[0] in (1, 3, 4) and frame.shape[0] < frame.shape[2] and not one_row:
        raise InputSpecError(f"the frame's shape {frame.shape} looks channel-first (C, H, W)",
                             hint="pass (H, W, C) frames: frame.transpose(1, 2, 0)")
    if layout == "gray" and frame.ndim == 3 and frame.shape[2] != 1:
        raise InputSpecError(f"layout 'gray' expects (H, W) or (H, W, 1) frames, got {frame.shape[2]} channels",
                             hint="pass layout='bgr' or 'rgb' for colour frames, or convert them to grey first")
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        raise InputSpecError(f"frame has {frame.shape[2]} channels", hint="pass 1, 3 or 4 channels")


def rgb_from_frame(frame: np.ndarray, layout: str = "bgr", bit_depth: int | None = None) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) frame in `layout` -> uint8 (H, W, 3) RGB.

    Args:
        layout: the frame's channel order: 'bgr' (OpenCV's), 'rgb' or 'gray'.
        bit_depth: for uint16 frames, the bits the device uses (12 for 0-4095); required for them.
    """
    _check_frame_shape(frame, layout)
    frame = uint8_from_frame(frame, bit_depth)
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if layout == "bgr" else cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if layout == "bgr" else np.ascontiguousarray(frame)


def image_in_color(rgb: np.ndarray, color: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> the same pixels in `color` order ('RGB' or 'BGR'), contiguous."""
    if color not in COLORS:
        raise InputSpecError(f"colour order {color!r} is not known", hint="RGB or BGR")
    return np.ascontiguousarray(rgb[:, :, ::-1]) if color == "BGR" else rgb


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


__all__ = ["COLORS", "FrameContract", "LAYOUTS", "MAX_FRAME_PIXELS", "RESIZE_DOWN", "RESIZE_RULES", "RESIZE_UP",
           "axis_weights", "check_layout", "image_in_color", "prob_at_size", "resize_square", "rgb_from_frame",
           "uint8_from_frame"]
