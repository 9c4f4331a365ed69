"""What an export is asked to do: `ExportOptions`, their checks, and the default splits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from llm4seg.errors import ConfigError


@dataclass
class ExportOptions:
    """Options of one `export_checkpoint` call (the flags of `llm4seg export`).

    Args:
        out: the export folder (replaced whole, only when the export succeeds).
        fp16, int8, pt2: write model.fp16.onnx, model.int8.onnx, model.pt2 beside model.onnx.
        calib, calib_split: dataset folder (and split) the INT8 ranges are calibrated on.
        data, split: dataset folder (and split) whose last `parity_images` images the gates score
            (default: --calib's, else synthetic images).
        engine: build TensorRT engines (`--build-engines`) from the FP16/INT8 graphs.
        int8_target: 'cpu' keeps the fastest passing INT8 candidate here, 'tensorrt' the most INT8
            one (default: tensorrt with `engine`, else cpu).
        batch: (min, opt, max) of the dynamic batch dimension.
        min_agreement: every artifact's mask Dice agreement with the checkpoint must reach this.
        max_int8_drop: INT8 may lose at most this much Dice against the held-out truth beside the
            FP32 graph's (0.005: half a point); on held-out frames without masks, this much Dice
            agreement with the FP32 graph.
        latency_threads: onnxruntime threads for the CPU latency column.
        rtx_targets: compute capabilities the real TensorRT-RTX build is made for.
        frames: beside each ONNX graph, write its two frames graphs (uint8 NHWC frames in, mask out).
        frames_color: the channel order those frames graphs take (BGR: OpenCV, PyAV bgr24).
        deepstream: also write each precision's `nvinfer` frames graph and a DeepStream nvinfer config.
    """

    out: Path
    fp16: bool = False
    int8: bool = False
    calib: str | None = None
    calib_split: str | None = None
    data: str | None = None
    split: str | None = None
    engine: bool = False
    pt2: bool = False
    int8_target: str | None = None
    opset: int = 17
    batch: tuple[int, int, int] = (1, 1, 16)
    parity_images: int = 16
    calib_images: int = 16
    min_agreement: float = 0.99
    max_int8_drop: float = 0.005
    latency_threads: int = 2
    rtx_targets: tuple[str, ...] = ("SM89",)
    frames: bool = True
    frames_color: str = "BGR"
    deepstream: bool = False


def parse_batch(text: str) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' -> (min, opt, max), or a ConfigError naming the text and the rule."""
    try:
        lo, opt, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--batch {text!r} is not MIN:OPT:MAX", hint="e.g. --batch 1:1:16") from None
    if not 1 <= lo <= opt <= hi:
        raise ConfigError(f"--batch {text!r} must satisfy 1 <= MIN <= OPT <= MAX", hint="e.g. --batch 1:4:32")
    return lo, opt, hi


def validate_options(opts: ExportOptions) -> None:
    """Refuse options no export can run with (each error names the flag and a valid value)."""
    if opts.int8_target not in (None, "cpu", "tensorrt"):
        raise ConfigError(f"--int8-target {opts.int8_target!r} is not known", hint="use cpu or tensorrt")
    for name in ("parity_images", "calib_images"):
        value = getattr(opts, name)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {value!r} must be at least 1",
                              hint=f"e.g. --{name.replace('_', '-')} 16")
    if opts.frames_color not in ("BGR", "RGB"):
        raise ConfigError(f"--frames-color {opts.frames_color!r} is not known",
                          hint="BGR (OpenCV, PyAV bgr24, GStreamer BGR caps) or RGB")
    if opts.int8 and not opts.calib:
        raise ConfigError("--int8 needs calibration images", hint="pass --calib DIR (a dataset folder with images/ and masks/)")


def default_calib_split(opts: ExportOptions) -> str | None:
    """Gating on valK of a folder that also has trainK: calibrate on trainK (as training pairs them)."""
    if opts.calib_split or not opts.calib or not opts.split or not opts.split.startswith("val"):
        return opts.calib_split
    candidate = "train" + opts.split[len("val"):]
    return candidate if (Path(opts.calib) / "splits" / f"{candidate}.txt").is_file() else None


def default_splits(opts: ExportOptions) -> ExportOptions:
    """Without --split, a dataset with split files is scored on its val split (val, else val1) and
    calibrated on the matching train split, never on images the gates score."""
    from llm4seg.data.datasets import held_out_split

    pool = opts.data or opts.calib
    held = held_out_split(pool, None) if pool and not opts.split and not opts.calib_split else None
    if held:  # the same rule as `llm4seg eval`: val, else val1; calibration from the matching train split
        calib = "train" + held[len("val"):]
        has_train = bool(opts.calib) and (Path(opts.calib) / "splits" / f"{calib}.txt").is_file()
        return replace(opts, split=held, calib_split=calib if has_train else None)
    return replace(opts, calib_split=default_calib_split(opts))
