"""Refuse a `model.pt2` that could run code when loaded, before torch.export.load sees it.

torch.export.load unpickles three kinds of payload: weights or constants marked `use_pickle`,
custom/opaque objects (`custom_obj_*`, `opaque_obj_*`), and the sample inputs, which it first
tries with `weights_only=True` and then, if that fails, with a full unpickler. A sha256 in
manifest.json beside the file does not help: whoever can change the file can change the manifest.
So the archive is read first (it is a zip): only the members torch.export.save writes for a plain
program are accepted, custom and opaque objects are refused, and every pickled member must load
with torch's restricted `weights_only` unpickler (tensors and plain containers, no other globals).
Torch's own first attempt then succeeds on the same bytes and its full-unpickler fallback never runs.
"""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from pathlib import Path

from llm4seg.errors import ConfigError

_KNOWN_TOP = {"archive_format", "archive_version", "byteorder", ".data", "data", "models"}
_MAX_MEMBERS = 100_000


def _refuse(path: Path, why: str) -> ConfigError:
    return ConfigError(f"{path} is refused before loading: {why}",
                       hint="load only programs written by `llm4seg export --pt2`; re-export it from the checkpoint")


def _members(path: Path) -> tuple[zipfile.ZipFile, dict[str, str]]:
    """The open archive and {path inside the archive's top folder: member name}."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _refuse(path, f"not a torch.export archive ({exc})") from None
    infos = archive.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise _refuse(path, f"{len(infos)} members")
    members: dict[str, str] = {}
    tops, normalised = set(), set()
    for info in infos:
        name = info.filename
        parts = name.split("/", 1)
        if len(parts) != 2 or any(c in ("", ".", "..") for c in name.rstrip("/").split("/")) or "\\" in name:
            raise _refuse(path, f"unexpected member {name!r}")
        # A zip may hold one name twice: Python's zipfile reads the last copy, torch's reader the
        # first, so a check of one could pass what the other loads. Every name must be unique, also
        # once normalised, and all under one top folder (issue 33, item 1).
        key = posixpath.normpath(name).casefold()
        if key in normalised:
            raise _refuse(path, f"member {name!r} appears more than once (or another name normalises to it)")
        normalised.add(key)
        tops.add(parts[0])
        members[parts[1]] = name
    if len(tops) > 1:
        raise _refuse(path, f"members under {len(tops)} top folders ({', '.join(sorted(tops)[:3])})")
    return archive, members


def _payload_configs(path: Path, archive: zipfile.ZipFile, members: dict[str, str]) -> list[tuple[str, dict]]:
    """(member, entry) for every weight and constant the archive's configs list."""
    entries = []
    for key, member in members.items():
        if key.endswith("_config.json") and key.startswith(("data/weights/", "data/constants/")):
            try:
                config = json.loads(archive.read(member))["config"]
            except (ValueError, KeyError, TypeError) as exc:
                raise _refuse(path, f"{key} is not a payload config ({exc})") from None
            entries += [(key, entry) for entry in config.values()]
    return entries


def _restricted_load(path: Path, name: str, blob: bytes) -> None:
    import torch

    try:
        torch.load(io.BytesIO(blob), weights_only=True)
    except Exception as exc:  # noqa: BLE001  (the restricted unpickler refuses with several types)
        raise _refuse(path, f"{name} is a pickle that torch's weights_only unpickler refuses "
                      f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def check_pt2_archive(path: Path | str) -> None:
    """Raise ConfigError unless loading `path` with torch.export.load can run no code from it."""
    path = Path(path)
    archive, members = _members(path)
    with archive:
        unknown = sorted({k.split("/", 1)[0] for k in members} - _KNOWN_TOP)
        if unknown:
            raise _refuse(path, f"members outside a torch.export archive's layout: {unknown}")
        for key, entry in _payload_configs(path, archive, members):
            name = str(entry.get("path_name", ""))
            if name.startswith(("custom_obj", "opaque_obj")):
                raise _refuse(path, f"it holds a custom object ({name}), which loads through pickle")
            if entry.get("use_pickle"):
                folder = key.rsplit("/", 1)[0]
                member = members.get(f"{folder}/{name}")
                if member is None:
                    raise _refuse(path, f"{key} names {name!r}, which the archive does not hold")
                _restricted_load(path, name, archive.read(member))
        for key, member in members.items():
            if key.startswith("data/sample_inputs/") or key.endswith((".pt", ".pkl", ".pickle")):
                _restricted_load(path, key, archive.read(member))
