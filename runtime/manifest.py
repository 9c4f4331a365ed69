"""Read and check an artifact's manifest entry, and the artifact's digest, without torch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llm4seg.errors import ConfigError
from llm4seg.fileio import file_sha256

MANIFEST_NAME = "manifest.json"
REQUIRED = ("artifact", "precision", "inputs", "outputs", "batch", "image_size", "preprocess", "threshold", "sha256")
_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: hash each file once


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
    return entry


def artifact_sha256(path: Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def verify_artifact(path: Path, entry: dict[str, Any]) -> None:
    """Refuse an artifact whose bytes differ from what the export recorded."""
    if artifact_sha256(path) != entry["sha256"]:
        raise ConfigError(f"{path} does not match the sha256 recorded in its manifest",
                          hint="the file was corrupted or replaced after export; re-run `llm4seg export`")
