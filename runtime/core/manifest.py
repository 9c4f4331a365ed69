"""manifest.json, its one owner for files: reading it (strict JSON, every entry checked and typed),
writing it (every entry sealed), adding an entry (adopt-engine), and the artifacts' digests.

What an entry must hold and its typed view: runtime/core/entry.py; building one (export):
runtime/core/manifest_build.py. Imports no torch: the runtime reads what the export wrote with it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llm4seg.errors import ConfigError
from llm4seg.fileio import file_sha256, write_json_atomic
from llm4seg.runtime.core.entry import ManifestEntry, check_entry, sealed
from llm4seg.strict_json import StrictJsonError, loads_strict

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 3  # 3: each entry carries entry_sha256, a digest of its other fields
ENTRY_FORMAT, FILE_FORMAT = "llm4seg-artifact", "llm4seg-artifacts"
# (path, inode, size, mtime_ns, ctime_ns) -> sha256: hash each file once. ctime is in the key because
# mtime can be set back after an in-place edit (os.utime) while ctime cannot: any write changes it.
_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def load_manifest(artifact: Path | str) -> ManifestEntry:
    """The manifest entry of `artifact` (model.onnx, model.fp16.plan, model.pt2, ...), checked and typed."""
    path = Path(artifact)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; the runtime runs exported artifacts, not training checkpoints",
                          hint=f"export it first: llm4seg export {path} --out ART --pt2, then pass ART/model.pt2 "
                          "(or ART/model.onnx)")
    if not path.is_file():
        raise ConfigError(f"artifact {str(path)!r} does not exist",
                          hint="pass a .onnx, .pt2 or .plan written by `llm4seg export`")
    manifest_path = path.parent / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ConfigError(f"{path.name} has no {MANIFEST_NAME} beside it in {path.parent}",
                          hint="keep the artifact in the folder `llm4seg export` wrote, with its manifest")
    entries = _read_file(manifest_path)["artifacts"]
    if path.name not in entries:
        listed = sorted(entries)
        # An engine built on the target (trtexec/polygraphy) is added by adopt-engine; export cannot make it there.
        fix = (f"check it and add it to the manifest: llm4seg adopt-engine {path}" if path.suffix == ".plan"
               else "re-run `llm4seg export` for this artifact")
        raise ConfigError(f"{manifest_path} has no entry for {path.name} (it lists {listed})", hint=fix)
    return ManifestEntry.from_dict(entries[path.name], manifest_path)


def artifact_sha256(path: Path) -> str:
    """sha256 of a file, computed once per (path, inode, size, mtime, ctime): a file changed in place,
    even with its size and mtime restored, is hashed again."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def verify_artifact(path: Path, entry: ManifestEntry) -> None:
    """Refuse an artifact whose bytes differ from what the export recorded."""
    if artifact_sha256(path) != entry.sha256:
        raise ConfigError(f"{path} does not match the sha256 recorded in its manifest",
                          hint="the file was corrupted or replaced after export; re-run `llm4seg export`")


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


def _read_file(path: Path) -> dict[str, Any]:
    """manifest.json through the strict JSON reader (a repeated key or NaN is refused, not resolved)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror or exc})",
                          hint="pass the folder `llm4seg export` wrote (it holds manifest.json)") from None
    try:
        manifest = loads_strict(data, str(path))
    except StrictJsonError as exc:
        raise ConfigError(f"{path} is not an llm4seg manifest: {exc.message}", hint="re-run `llm4seg export`") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), dict):
        raise ConfigError(f"{path} is not an llm4seg manifest (no 'artifacts' table)", hint="re-run `llm4seg export`")
    return manifest


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """The whole manifest.json of an export folder as written (every entry checked), or a ConfigError.
    Readers of entries use `read_entries` (typed); this is for writers (adopt-engine) and copies."""
    path = Path(folder) / MANIFEST_NAME
    manifest = _read_file(path)
    for name, entry in manifest["artifacts"].items():
        check_entry(entry, f"{path} ({name})")
        if name != entry["artifact"]:  # the key is what callers join to the folder: it must be the checked name
            raise ConfigError(f"{path} lists {name!r} for the artifact {entry['artifact']!r}",
                              hint="re-run `llm4seg export` (a hand-edited manifest)")
    return manifest


def read_entries(folder: Path | str) -> dict[str, ManifestEntry]:
    """Every entry of an export folder's manifest.json, checked and typed, by artifact file name."""
    path = Path(folder) / MANIFEST_NAME
    return {name: ManifestEntry.from_dict(entry, f"{path} ({name})")
            for name, entry in read_manifest(folder)["artifacts"].items()}


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


__all__ = ["ENTRY_FORMAT", "FILE_FORMAT", "MANIFEST_NAME", "MANIFEST_VERSION", "ManifestEntry", "add_entry",
           "artifact_sha256", "load_manifest", "read_entries", "read_manifest", "verify_artifact", "write_manifest"]
