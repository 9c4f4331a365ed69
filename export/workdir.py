"""The export folder is replaced whole, never edited in place.

An export writes into a fresh temporary folder beside `--out` and swaps it in only when it
succeeded, so a manifest never lists an artifact from another checkpoint and a failed export
leaves the previous folder as it was. A non-empty `--out` that is not an export folder is refused,
and so is an earlier export folder holding files that export did not write (a Triton repository,
a user's notes): replacing the folder would delete them. What each export wrote is listed in
`.llm4seg-export-files`. The TensorRT engine cache (`.engine-cache`) is carried over.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

from llm4seg.errors import ConfigError
from llm4seg.fileio import fresh_folder, swap_folder

MANIFEST_NAME = "manifest.json"
ENGINE_CACHE = ".engine-cache"
WRITTEN = ".llm4seg-export-files"  # the names an export put in its folder (the only ones a re-export replaces)
COMPANIONS = ("deepstream_nvinfer.txt",)  # written beside the artifacts by exports older than WRITTEN


def written_by_export(out: Path) -> set[str]:
    """The names an earlier export wrote in `out`: its list, else (an older export) its manifest's
    artifacts and the files always written beside them."""
    try:
        return set(json.loads((out / WRITTEN).read_text())) | {WRITTEN}
    except (OSError, ValueError, TypeError):
        pass
    try:
        artifacts = set(json.loads((out / MANIFEST_NAME).read_text()).get("artifacts", {}))
    except (OSError, ValueError, AttributeError):
        artifacts = set()
    return artifacts | {MANIFEST_NAME, ENGINE_CACHE, *COMPANIONS}


def foreign_entries(out: Path) -> list[str]:
    """Names in an earlier export folder that export did not write (a re-export would delete them)."""
    ours = written_by_export(out) | {ENGINE_CACHE}
    return sorted(p.name for p in out.iterdir() if p.name not in ours)


def check_out_folder(out: Path) -> None:
    """Refuse an --out that is a file, or a non-empty folder that is not an earlier export."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file", hint="pass a folder for the artifacts")
    if out.is_dir() and not (out / MANIFEST_NAME).is_file():
        visible = [p.name for p in out.iterdir() if p.name != ENGINE_CACHE]
        if visible:
            raise ConfigError(f"--out {out} is not empty ({len(visible)} entries, e.g. {sorted(visible)[:3]}) "
                              "and is not an llm4seg export folder",
                              hint="pass a new or empty folder, or an earlier export's folder (it is replaced whole)")
    if out.is_dir() and (out / MANIFEST_NAME).is_file():
        foreign = foreign_entries(out)
        if foreign:
            raise ConfigError(f"--out {out} is an earlier export that now also holds {', '.join(foreign[:6])}"
                              f"{' ...' if len(foreign) > 6 else ''}, which export did not write: replacing the "
                              "folder would delete them",
                              hint="move them out of the export folder (e.g. a Triton repository beside it), or "
                                   "pass another --out")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def recover(out: Path) -> list[str]:
    """Clear what a killed export left beside `out`; returns what was done, for the log.

    `.OUT.tmp<PID>` of a process that no longer runs is removed (a live one is another export at
    work). `.OUT.old` without `OUT` means a kill between the swap's two renames: the old folder, a
    complete export, is put back (the new one cannot be told apart from an unfinished staging)."""
    done = []
    for stale in out.parent.glob(f".{out.name}.tmp*"):
        suffix = stale.name[len(f".{out.name}.tmp"):]
        if suffix.isdigit() and int(suffix) != os.getpid() and not _alive(int(suffix)):
            shutil.rmtree(stale, ignore_errors=True)
            done.append(f"removed {stale.name}, left by a killed export")
    old = out.parent / f".{out.name}.old"
    if old.is_dir() and not out.exists():
        os.rename(old, out)
        done.append(f"restored {out.name} from {old.name} (an export was killed while replacing it)")
    return done


@contextlib.contextmanager
def staged_folder(out: Path, log=lambda s: None) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `out`, on failure it is removed."""
    out = Path(out)
    if out.parent.is_dir():
        for line in recover(out):
            log(line)
    check_out_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_folder(out.parent, out.name, suffix=str(os.getpid()))  # per process: never another export's
    if (out / ENGINE_CACHE).is_dir():
        shutil.copytree(out / ENGINE_CACHE, tmp / ENGINE_CACHE)
    try:
        yield tmp
        check_out_folder(out)  # nothing foreign appeared in --out while this export ran
        (tmp / WRITTEN).write_text(json.dumps(sorted(p.name for p in tmp.iterdir() if p.name != ENGINE_CACHE)))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_folder(tmp, out)
