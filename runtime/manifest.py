"""Read and check an artifact's manifest entry, and the artifact's digest, without torch."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from llm4seg.errors import ConfigError
from llm4seg.fileio import file_sha256

MANIFEST_NAME = "manifest.json"
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


def check_entry(entry: Any, where: Path | str) -> dict[str, Any]:
    """Refuse an entry that lacks what the runtime reads (an old or hand-edited manifest)."""
    missing = [k for k in REQUIRED if not isinstance(entry, dict) or k not in entry]
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
    return entry


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad_values(entry: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(field, value, what was expected) for every value the runtime would compute nonsense from."""
    channels = entry["inputs"][0]["shape"][1] if len(entry["inputs"][0]["shape"]) > 1 else None
    pre, batch = entry["preprocess"], entry["batch"]
    bad = []
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
