"""manifest.json, its one owner: the schema (version, required fields, valid values), building an
entry (export), reading and checking one (runtime), adding one (adopt-engine), and digests.

Imports no torch: the runtime reads what the export wrote with this same module.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from llm4seg.contract import FrameContract
from llm4seg.errors import ConfigError
from llm4seg.fileio import file_sha256, write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 3  # 3: each entry carries entry_sha256, a digest of its other fields
ENTRY_FORMAT, FILE_FORMAT = "llm4seg-artifact", "llm4seg-artifacts"
DIGEST_FIELD = "entry_sha256"
REQUIRED = ("artifact", "precision", "inputs", "outputs", "batch", "image_size", "preprocess", "threshold", "sha256")
# (path, inode, size, mtime_ns, ctime_ns) -> sha256: hash each file once. ctime is in the key because
# mtime can be set back after an in-place edit (os.utime) while ctime cannot: any write changes it.
_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def load_manifest(artifact: Path | str) -> dict[str, Any]:
    """The manifest entry of `artifact` (model.onnx, model.fp16.plan, model.pt2, ...), checked."""
    path = Path(artifact)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; the runtime runs exported artifacts, not training checkpoints",
                          hint=f"export it first: llm4seg export {path} --out ART --pt2, then pass ART/model.pt2 "
                          "(or ART/model.onnx)")
    if not path.is_file():
        raise ConfigError(f"artifact {str(path)!r} does not exist",
                          hint="pass a .onnx, .pt2 or .plan written by `llm4seg export`")
    manifest_path = path.parent / MANIFEST_NAME
    try:
        entries = json.loads(manifest_path.read_text())["artifacts"]
    except FileNotFoundError:
        raise ConfigError(f"{path.name} has no {MANIFEST_NAME} beside it in {path.parent}",
                          hint="keep the artifact in the folder `llm4seg export` wrote, with its manifest") from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{manifest_path} is not an llm4seg manifest ({type(exc).__name__}: {exc})",
                          hint="re-run `llm4seg export`") from exc
    if not isinstance(entries, dict) or path.name not in entries:
        listed = sorted(entries) if isinstance(entries, dict) else entries
        # An engine built on the target (trtexec/polygraphy) is added by adopt-engine; export cannot make it there.
        fix = (f"check it and add it to the manifest: llm4seg adopt-engine {path}" if path.suffix == ".plan"
               else "re-run `llm4seg export` for this artifact")
        raise ConfigError(f"{manifest_path} has no entry for {path.name} (it lists {listed})", hint=fix)
    return check_entry(entries[path.name], manifest_path)


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
    return bad


def artifact_sha256(path: Path) -> str:
    """sha256 of a file, computed once per (path, inode, size, mtime, ctime): a file changed in place,
    even with its size and mtime restored, is hashed again."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def verify_artifact(path: Path, entry: dict[str, Any]) -> None:
    """Refuse an artifact whose bytes differ from what the export recorded."""
    if artifact_sha256(path) != entry["sha256"]:
        raise ConfigError(f"{path} does not match the sha256 recorded in its manifest",
                          hint="the file was corrupted or replaced after export; re-run `llm4seg export`")


def tool_versions() -> dict[str, str]:
    """Versions of the tools present where an artifact is made (those not installed are left out)."""
    versions = {"python": platform.python_version()}
    for name in ("llm4seg", "torch", "onnx", "onnxruntime", "tensorrt"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "unknown")
        except ImportError:
            continue
    return versions


def build_manifest(*, artifact: str, precision: str, model_config: dict[str, Any], checkpoint_sha256: str,
                   opset: int | None, batch_range: tuple[int, int, int], folds: dict[str, Any],
                   parity: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                   frames: dict[str, Any] | None = None) -> dict[str, Any]:
    """One artifact's manifest entry, from the model's config and what the export measured.

    Args:
        artifact: the file name (model.onnx, model.fp16.onnx, model.pt2, model.fp16.plan, ...).
        precision: fp32, fp16 or int8.
        model_config: the checkpoint's model config (image_size, in_channels, num_classes, mean,
            std, threshold, name, block, paper_double_scaling).
        batch_range: (min, opt, max) of the dynamic batch dimension.
        parity: the held-out-image gate measured on this very artifact (empty until it ran).
        extra: further fields (sha256, size_bytes, engine, ...), which win over the built ones.
        frames: for a frames graph, {'form': 'any-size' | 'model-size', 'input_color': 'BGR' | 'RGB'}:
            uint8 NHWC frames in, prob and mask out, the contract inside.

    The `preprocess` table is the frame contract (llm4seg.contract) written out; for a float graph
    the runtime applies it on the host, a frames graph applies it inside.
    """
    contract = FrameContract.from_model_config(model_config)
    size, channels = contract.image_size, model_config["in_channels"]
    inputs, outputs = _io(contract, channels, model_config["num_classes"], frames)
    return {
        "format": ENTRY_FORMAT,
        "manifest_version": MANIFEST_VERSION,
        "artifact": artifact,
        "precision": precision,
        "opset": opset,
        "inputs": inputs,
        "outputs": outputs,
        "batch": {"min": batch_range[0], "opt": batch_range[1], "max": batch_range[2]},
        "image_size": size,
        "preprocess": contract.to_manifest(),
        "threshold": contract.threshold,
        **({"frames": _frames_table(contract, frames)} if frames else {}),
        "model": {"name": model_config["name"], "block": model_config.get("block")},
        "folds": folds,
        "checkpoint_sha256": checkpoint_sha256,
        "parity": parity or {},
        "tool_versions": tool_versions(),
        **(extra or {}),
    }


def _io(contract: FrameContract, channels: int, classes: int,
        frames: dict[str, Any] | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The inputs and outputs tables of a float graph or a frames graph."""
    size = contract.image_size
    if not frames:
        return ([{"name": "image", "dtype": "float32", "shape": ["batch", channels, size, size], "layout": "NCHW",
                  "color": contract.color}],
                [{"name": "prob", "dtype": "float32", "shape": ["batch", classes, size, size],
                  "meaning": "foreground probability (sigmoid applied)"}])
    h, w = ("height", "width") if frames["form"] == "any-size" else (size, size)
    if frames["form"] == "nvinfer":  # DeepStream: float pixel values 0-255, NCHW, at the model's size
        inputs = [{"name": "frames", "dtype": "float32", "shape": ["batch", channels, size, size], "layout": "NCHW",
                   "color": frames["input_color"], "meaning": "pixel values 0-255 (nvinfer: net-scale-factor=1, offsets 0)"}]
    else:
        inputs = [{"name": "frames", "dtype": "uint8", "shape": ["batch", h, w, channels], "layout": "NHWC",
                   "color": frames["input_color"]}]
    return (inputs,
            [{"name": "prob", "dtype": "float32", "shape": ["batch", classes, h, w],
              "meaning": "foreground probability at the frame's size" if h == "height" else
              "foreground probability at the model's size"},
             {"name": "mask", "dtype": "uint8", "shape": ["batch", classes, h, w], "meaning": "prob > threshold, 0/1"}])


def _frames_table(contract: FrameContract, frames: dict[str, Any]) -> dict[str, Any]:
    inside = ["colour order", "scale, mean/std"] if frames["form"] == "nvinfer" else \
        ["uint8 -> float32", "colour order", "scale, mean/std"]
    if frames["form"] == "any-size":
        inside[2:2] = [f"resize to {contract.image_size} (per axis: {contract.resize_down} down, "
                       f"{contract.resize_up} up; rounded to 8 bits)"]
        inside.append(f"probabilities back to the frame's size ({contract.mask_resize})")
    inside.append(f"mask = prob > {contract.threshold}")
    return {"form": frames["form"], "input_color": frames["input_color"], "model_color": contract.color,
            "inside": inside, "source": frames.get("source")}


def write_manifest(folder: Path, manifests: dict[str, dict[str, Any]], extra: dict[str, Any] | None = None) -> Path:
    """One manifest.json per export folder, keyed by artifact file name, written atomically. The
    folder is always a fresh one (export/workdir.py), so nothing of an earlier export is merged in."""
    path = Path(folder) / MANIFEST_NAME
    _write_strict(path, {"format": FILE_FORMAT, "manifest_version": MANIFEST_VERSION,
                         "artifacts": {name: sealed(entry) for name, entry in manifests.items()}, **(extra or {})})
    return path


def _write_strict(path: Path, manifest: dict[str, Any]) -> None:
    """manifest.json is strict JSON: a NaN or infinity anywhere is an error, never a bare `NaN`."""
    try:
        write_json_atomic(path, manifest, strict=True)
    except ValueError as exc:
        raise ConfigError(f"{path} would hold a NaN or infinite value ({exc})",
                          hint="a measurement came out non-finite: the artifact's outputs or weights are not "
                          "finite; re-train or re-export") from exc


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """The whole manifest.json of an export folder (every entry checked), or a ConfigError."""
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc})",
                          hint="pass the folder `llm4seg export` wrote (it holds manifest.json)") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), dict):
        raise ConfigError(f"{path} is not an llm4seg manifest (no 'artifacts' table)", hint="re-run `llm4seg export`")
    for name, entry in manifest["artifacts"].items():
        check_entry(entry, f"{path} ({name})")
        if name != entry["artifact"]:  # the key is what callers join to the folder: it must be the checked name
            raise ConfigError(f"{path} lists {name!r} for the artifact {entry['artifact']!r}",
                              hint="re-run `llm4seg export` (a hand-edited manifest)")
    return manifest


def add_entry(folder: Path | str, name: str, entry: dict[str, Any]) -> Path:
    """Check `entry` and add (or replace) it as `name` in the folder's manifest.json, atomically
    (sealed with its `entry_sha256` here)."""
    entry = sealed(entry)
    check_entry(entry, f"{Path(folder) / MANIFEST_NAME} ({name})")
    manifest = read_manifest(folder)
    manifest["artifacts"][name] = entry
    path = Path(folder) / MANIFEST_NAME
    _write_strict(path, manifest)
    return path
