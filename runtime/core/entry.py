"""A manifest entry: its checks, its seal, and the typed view every reader uses.

`check_entry` refuses an entry (a dict, as written in manifest.json) that lacks what the runtime
reads, holds values it would compute nonsense from, or was edited after it was sealed
(`entry_sha256`). `ManifestEntry.from_dict` runs it and gives the typed entry: the frame contract
as its preprocessing field, the input and output tensors, the batch range, the frames-graph form
and the calibrated quality table, so no reader picks fields out by string key. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from llm4seg.contract import FrameContract
from llm4seg.errors import ConfigError

DIGEST_FIELD = "entry_sha256"
REQUIRED = ("artifact", "precision", "inputs", "outputs", "batch", "image_size", "preprocess", "threshold", "sha256")
FRAMES_FORMS = ("any-size", "model-size", "nvinfer")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: name, numpy dtype name, shape (ints, or names for dynamic
    dimensions), layout (NCHW/NHWC, inputs only) and colour order (inputs only)."""

    name: str
    dtype: str
    shape: tuple[Any, ...]
    layout: str | None = None
    color: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TensorSpec":
        """The spec of a manifest's `inputs`/`outputs` item."""
        return cls(str(d["name"]), str(d["dtype"]), tuple(d["shape"]), d.get("layout"), d.get("color"))


@dataclass(frozen=True)
class FramesSpec:
    """A frames graph's form ('any-size', 'model-size' or 'nvinfer'), the colour order of the frames
    it takes, the model's own, and the graph it was made from."""

    form: str
    input_color: str
    model_color: str
    source: str | None
    inside: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FramesSpec":
        """The spec of a manifest's `frames` table."""
        return cls(str(d["form"]), str(d["input_color"]), str(d.get("model_color", "RGB")), d.get("source"),
                   tuple(str(s) for s in d.get("inside") or ()))


@dataclass(frozen=True)
class ManifestEntry:
    """One artifact's checked manifest entry, typed (`raw` keeps the dict as written, read-only)."""

    artifact: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batch: tuple[int, int, int]  # (min, opt, max)
    contract: FrameContract
    frames: FramesSpec | None
    model_name: str
    quality: Mapping[str, Any] | None
    sha256: str
    raw: Mapping[str, Any]

    @classmethod
    def from_dict(cls, entry: Any, where: Path | str, digest: bool = True) -> "ManifestEntry":
        """Check `entry` (see `check_entry`) and type it."""
        entry = check_entry(entry, where, digest)
        try:
            return cls._typed(entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"the manifest entry in {where} has a malformed field ({type(exc).__name__}: {exc})",
                              hint="re-run `llm4seg export`") from exc

    @classmethod
    def _typed(cls, entry: dict[str, Any]) -> "ManifestEntry":
        frames = FramesSpec.from_dict(entry["frames"]) if isinstance(entry.get("frames"), Mapping) else None
        b = entry["batch"]
        return cls(entry["artifact"], str(entry["precision"]), tuple(TensorSpec.from_dict(t) for t in entry["inputs"]),
                   tuple(TensorSpec.from_dict(t) for t in entry["outputs"]), (b["min"], b.get("opt", b["min"]), b["max"]),
                   FrameContract.from_manifest(entry), frames, str((entry.get("model") or {}).get("name", "model")),
                   entry.get("quality"), str(entry["sha256"]), MappingProxyType(entry))

    @property
    def input(self) -> TensorSpec:
        """The (only) input tensor."""
        return self.inputs[0]

    @property
    def image_size(self) -> int:
        """The model's square input size S."""
        return self.contract.image_size

    @property
    def threshold(self) -> float:
        """The mask threshold."""
        return self.contract.threshold

    @property
    def max_batch(self) -> int:
        """The most frames one call takes."""
        return self.batch[2]

    @property
    def input_color(self) -> str:
        """The colour order of what the artifact takes: a frames graph's frames, else the model's."""
        return self.frames.input_color if self.frames else (self.input.color or self.contract.color)

    def optional(self, field: str) -> Any:
        """A field only some artifacts have (engine, source_onnx, adoption, parity), or None."""
        return self.raw.get(field)

    def to_dict(self) -> dict[str, Any]:
        """The entry as written (a plain, mutable copy)."""
        return json.loads(json.dumps(dict(self.raw)))


def check_entry(entry: Any, where: Path | str, digest: bool = True) -> dict[str, Any]:
    """Refuse an entry that lacks what the runtime reads, holds values it would compute nonsense
    from, or (with `digest`, for every entry read from a file) was edited after it was written.
    `digest=False` is for an entry a program built in memory and hands over itself (the export's
    gates, a served model's config)."""
    missing = [k for k in REQUIRED + ((DIGEST_FIELD,) if digest else ()) if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise ConfigError(f"the manifest entry in {where} lacks {', '.join(missing)}",
                          hint="re-export with this llm4seg version (`llm4seg export`): it records every field, "
                          "the artifact's sha256 included")
    try:
        int(entry["image_size"]), float(entry["threshold"]), int(entry["batch"]["min"]), int(entry["batch"]["max"])
        entry["inputs"][0]["shape"], entry["preprocess"]["mean"], entry["preprocess"]["std"]  # noqa: B018
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"the manifest entry in {where} has a malformed field ({type(exc).__name__}: {exc})",
                          hint="re-run `llm4seg export`") from exc
    for field, value, expected in _bad_values(entry):
        raise ConfigError(f"the manifest entry in {where} has {field} = {value!r}; expected {expected}",
                          hint="re-run `llm4seg export` (a hand-edited or damaged manifest gives NaN or empty masks)")
    if digest and entry_sha256(entry) != entry[DIGEST_FIELD]:
        raise ConfigError(f"the manifest entry for {entry['artifact']} in {where} was changed after it was written "
                          f"(its fields no longer match {DIGEST_FIELD}): preprocessing, threshold or recorded checks "
                          "may not be what the export measured",
                          hint="re-run `llm4seg export` (or `llm4seg adopt-engine` for an engine); the export's "
                               "options set the preprocessing and threshold, and they are gated there")
    return entry


def entry_sha256(entry: dict[str, Any]) -> str:
    """Digest of a manifest entry without its own `entry_sha256` (canonical JSON), so a hand edit of
    any field (mean/std, threshold, scale, a recorded parity) is refused where the entry is read."""
    body = {k: v for k, v in entry.items() if k != DIGEST_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def sealed(entry: dict[str, Any]) -> dict[str, Any]:
    """`entry` with its `entry_sha256` (re)computed: the one way entries are written."""
    body = {k: v for k, v in entry.items() if k != DIGEST_FIELD}
    try:
        return {**body, DIGEST_FIELD: entry_sha256(body)}
    except ValueError as exc:
        raise ConfigError(f"the manifest entry for {entry.get('artifact')} holds a NaN or infinite value ({exc})",
                          hint="a measurement came out non-finite: the artifact's outputs or weights are not "
                          "finite; re-train or re-export") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plain_file_name(name: Any) -> bool:
    """True for a file name that stays in its folder: no separator, not '.' or '..', no NUL."""
    return (isinstance(name, str) and bool(name) and name not in (".", "..") and "/" not in name
            and "\\" not in name and "\x00" not in name)


def _bad_values(entry: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(field, value, what was expected) for every value the runtime would compute nonsense from, and
    every file name that would reach outside the export folder (absolute, '../', a separator)."""
    shape = entry["inputs"][0]["shape"]
    nhwc = entry["inputs"][0].get("layout") == "NHWC"
    channels = (shape[-1] if nhwc else shape[1]) if len(shape) > 1 else None
    pre, batch = entry["preprocess"], entry["batch"]
    bad = [(field, entry[field], "a plain file name inside the export folder (no '/', no '..')")
           for field in ("artifact", "source_onnx") if field in entry and not plain_file_name(entry[field])]
    if not (_is_number(entry["threshold"]) and 0 < entry["threshold"] < 1):
        bad.append(("threshold", entry["threshold"], "a number strictly between 0 and 1"))
    if not (isinstance(entry["image_size"], int) and entry["image_size"] >= 16):
        bad.append(("image_size", entry["image_size"], "an integer of at least 16"))
    for name, values, ok in (("preprocess.mean", pre["mean"], _is_number),
                             ("preprocess.std", pre["std"], lambda v: _is_number(v) and v > 0)):
        if not (isinstance(values, list) and len(values) == channels and all(ok(v) for v in values)):
            bad.append((name, values, f"a list of {channels} finite number(s)" + (", each > 0" if "std" in name else "")))
    if "scale" in pre and not (_is_number(pre["scale"]) and pre["scale"] > 0):
        bad.append(("preprocess.scale", pre["scale"], "a finite number > 0"))
    quality = entry.get("quality")
    if quality is not None and not (isinstance(quality, dict) and _is_number(quality.get("low_confidence"))
                                    and 0 < quality["low_confidence"] <= 1):
        bad.append(("quality", quality, "a table whose low_confidence is a number in (0, 1]"))
    lo, hi = batch.get("min"), batch.get("max")
    if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
        bad.append(("batch", batch, "integers with 1 <= min <= max"))
    return bad + _bad_tensors(entry)


def _bad_tensors(entry: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The tensor tables, the input's layout and colour, and a frames graph's `frames` table."""
    bad = []
    for table in ("inputs", "outputs"):
        items = entry[table]
        if not (isinstance(items, list) and items and all(
                isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("dtype"), str)
                and isinstance(t.get("shape"), list) for t in items)):
            bad.append((table, items, "a non-empty list of {name, dtype, shape} tables"))
    spec = entry["inputs"][0]
    if spec.get("layout", "NCHW") not in ("NCHW", "NHWC"):
        bad.append(("inputs.0.layout", spec.get("layout"), "NCHW or NHWC"))
    if spec.get("color", "RGB") not in ("RGB", "BGR"):
        bad.append(("inputs.0.color", spec.get("color"), "RGB or BGR"))
    frames = entry.get("frames")
    if frames is not None and not (isinstance(frames, dict) and frames.get("form") in FRAMES_FORMS
                                   and frames.get("input_color") in ("RGB", "BGR")
                                   and frames.get("model_color", "RGB") in ("RGB", "BGR")):
        bad.append(("frames", frames, f"a table with form in {FRAMES_FORMS} and input_color/model_color RGB or BGR"))
    return bad



__all__ = ["DIGEST_FIELD", "FRAMES_FORMS", "FramesSpec", "ManifestEntry", "REQUIRED", "TensorSpec", "check_entry",
           "entry_sha256", "plain_file_name", "sealed"]
