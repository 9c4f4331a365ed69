"""DICOM files: which files are DICOM, pydicom imported with its fix, and the refusal every
DICOM error takes (the file named)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm4seg.errors import ConfigError

DICOM_SUFFIXES = (".dcm", ".dicom")
MAX_SERIES_FILES = 20000  # a folder bigger than this is a whole archive, not a series


def is_dicom_file(path: Path | str) -> bool:
    """True for a file with the DICOM preamble ('DICM' at byte 128) or a .dcm name."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"


def pydicom_module() -> Any:
    """pydicom, or an error naming the extra that installs it."""
    from llm4seg._optional import require

    return require("pydicom", "reading DICOM")


def refusal(path: Path, what: str, hint: str) -> ConfigError:
    """The error for a DICOM file (or folder) that cannot be used: its name, what is wrong, the fix."""
    return ConfigError(f"DICOM {path.name}: {what}", hint=hint)


def dicom_files_in(folder: Path | str) -> list[Path]:
    """The DICOM files under `folder` (subfolders too, as PACS exports nest them; DICOMDIR and hidden
    files left out), sorted by path."""
    folder = Path(folder)
    files = []
    for path in sorted(folder.rglob("*")):
        if path.name.startswith(".") or path.name.upper() == "DICOMDIR" or not path.is_file():
            continue
        if is_dicom_file(path):
            files.append(path)
            if len(files) > MAX_SERIES_FILES:
                raise refusal(folder, f"holds more than {MAX_SERIES_FILES} DICOM files",
                              "pass the folder of one series (or one file), not a whole archive")
    return files
