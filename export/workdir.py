"""The export folder is replaced whole, never edited in place.

An export writes into a fresh temporary folder beside `--out` and swaps it in only when it
succeeded, so a manifest never lists an artifact from another checkpoint and a failed export
leaves the previous folder as it was. A non-empty `--out` that is not an export folder is refused.
The TensorRT engine cache (`.engine-cache`) is carried over to the new folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from llm4seg.errors import ConfigError
from llm4seg.fileio import fresh_folder, swap_folder

MANIFEST_NAME = "manifest.json"
ENGINE_CACHE = ".engine-cache"


def check_out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file", hint="pass a folder for the artifacts")
    if out.is_dir() and not (out / MANIFEST_NAME).is_file():
        visible = [p.name for p in out.iterdir() if p.name != ENGINE_CACHE]
        if visible:
            raise ConfigError(f"--out {out} is not empty ({len(visible)} entries, e.g. {sorted(visible)[:3]}) "
                              "and is not an llm4seg export folder",
                              hint="pass a new or empty folder, or an earlier export's folder (it is replaced whole)")


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `out`, on failure it is removed."""
    out = Path(out)
    check_out_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_folder(out.parent, out.name, suffix=str(os.getpid()))  # per process: never another export's
    if (out / ENGINE_CACHE).is_dir():
        shutil.copytree(out / ENGINE_CACHE, tmp / ENGINE_CACHE)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_folder(tmp, out)
