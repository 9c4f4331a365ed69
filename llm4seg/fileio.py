"""Atomic file writes: a reader never sees half a file, a crash never loses the old one."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

_UMASK = os.umask(0)  # read once (os.umask can only be read by setting it), then restored
os.umask(_UMASK)

# Tests set this to simulate a kill at a chosen write point (see fault_point); None in real runs.
FAULT_HOOK: Callable[[str], None] | None = None


def fault_point(label: str) -> None:
    """Marks a point of a multi-file write where a process may die; tests inject kills here."""
    if FAULT_HOOK is not None:
        FAULT_HOOK(label)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename. The
    temporary name keeps the file's suffix, for writers that insist on one (torch's .pt2)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # Some writers (safetensors) create their file 0600: give it the mode a plain write would
        # have, so others in a team can read a shared run.
        os.chmod(tmp, 0o666 & ~_UMASK)
        fault_point(f"wrote {path.name}")
        os.replace(tmp, path)
        fault_point(f"replaced {path.name}")
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(path: Path | str, data: Any, strict: bool = False) -> None:
    """Write `data` as JSON to `path` atomically (a reader sees the old file or the new one, never half).
    `strict`: refuse NaN and infinities (ValueError) instead of writing the non-standard `NaN`."""
    text = json.dumps(data, indent=2, sort_keys=False, allow_nan=not strict) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_jsonl_atomic(path: Path | str, rows: list[Any]) -> None:
    """Write one strict-JSON line per row to `path` atomically (NaN refused, as in manifests)."""
    text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def file_sha256(path: Path | str) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fresh_folder(parent: Path, name: str, suffix: str = "") -> Path:
    """An empty temporary folder `.NAME.tmpSUFFIX` in `parent` (a leftover of a crash is cleared first)."""
    tmp = Path(parent) / f".{name}.tmp{suffix}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def swap_folder(tmp: Path, target: Path, label: str = "replaced") -> None:
    """Put the completely written folder `tmp` in place of `target` (two renames; the old one is
    moved aside, then deleted). A kill in between leaves `.TARGET.old` and `tmp`, both leftovers
    that `remove_leftovers` clears; the caller's own state says which folder is current."""
    old = target.parent / f".{target.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.rename(target, old)
        fault_point(f"moved aside {target.name}")
    os.rename(tmp, target)
    fault_point(f"{label} {target.name}")
    if old.exists():
        shutil.rmtree(old)


def is_leftover(name: str) -> bool:
    """Names our atomic writes use while in progress: .NAME.tmpPIDSUFFIX, .NAME.tmp, .NAME.old."""
    return name.startswith(".") and (".tmp" in name or name.endswith(".old"))


def remove_leftovers(root: Path | str) -> list[str]:
    """Delete what interrupted atomic writes left below `root`; returns the removed paths."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [d for d in dirnames if is_leftover(d)]:
            shutil.rmtree(Path(dirpath) / name, ignore_errors=True)
            dirnames.remove(name)
            removed.append(str(Path(dirpath) / name))
        for name in filenames:
            if is_leftover(name):
                (Path(dirpath) / name).unlink(missing_ok=True)
                removed.append(str(Path(dirpath) / name))
    return removed


def save_safetensors(tensors: dict[str, Any], tmp: Path | str, final: Path | str) -> None:
    """safetensors' save_file, whose I/O failures (a full disk, a file-size limit) come as its own
    exception type: they are raised as OSError naming `final`, so the CLI says what failed where."""
    from llm4seg._optional import require

    save_file = require("safetensors.torch").save_file
    try:
        save_file(tensors, str(tmp))
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001  (safetensors_rust.SafetensorError and others)
        text = str(exc)
        code = (errno.ENOSPC if "code: 28" in text or "No space left" in text
                else errno.EFBIG if "code: 27" in text or "too large" in text.lower() else errno.EIO)
        raise OSError(code, f"{os.strerror(code)} ({text})", str(final)) from exc


# safetensors: an 8-byte little-endian header length, a JSON header, then the data. A crafted file
# can claim a header of 2^40 bytes or tensors far beyond its end; both are refused before reading.
MAX_SAFETENSORS_HEADER = 100 << 20
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def safetensors_problem(path: Path | str) -> str | None:
    """Why the safetensors file at `path` cannot be what it claims (a header length or tensor extents
    beyond the file, sizes that do not match shapes), or None when its header is consistent."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "shorter than a safetensors header"
        n = int.from_bytes(head, "little")
        if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            return f"its header claims {n} bytes in a file of {size}"
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError) as exc:
            return f"its header is not JSON ({exc})"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    for name, info in header.items():
        problem = None if name == "__metadata__" else tensor_extent_problem(name, info, size - 8 - n)
        if problem:
            return problem
    return None


def tensor_extent_problem(name: str, info: Any, data_bytes: int | None = None) -> str | None:
    """Why one safetensors header entry cannot be right (offsets reversed or beyond `data_bytes`, a
    byte count that is not shape x dtype size, a malformed entry), or None."""
    try:
        start, end = (int(v) for v in info["data_offsets"])
        count = 1
        for dim in info["shape"]:
            count *= int(dim)
        width = _DTYPE_BYTES.get(info["dtype"])
    except (KeyError, TypeError, ValueError):
        return f"tensor {name!r} has a malformed entry"
    beyond = data_bytes is not None and end > data_bytes
    if not 0 <= start <= end or beyond or (width is not None and end - start != count * width):
        return (f"tensor {name!r} claims bytes {start}-{end}" + (f" of {data_bytes}" if data_bytes is not None else "")
                + f" (shape {info.get('shape')}, {info.get('dtype')})")
    return None


@contextlib.contextmanager
def stderr_fd_captured() -> Iterator[list[str]]:
    """Catch what C libraries write to file descriptor 2 meanwhile (FFmpeg's av_log, libjpeg's
    warnings bypass every Python log setting); the yielded list holds the text once the block ends."""
    import sys
    import tempfile

    caught: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to catch
        yield caught
        return
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield caught
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            caught.append(sink.read().decode(errors="replace"))
