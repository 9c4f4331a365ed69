"""`ruff check` (pyflakes rules, F) is clean on the whole tree (issue 44, item 4: a `ConfigError`
caught but never imported turned every damaged DICOM pixel stream into a NameError, on a branch no
test reached). `make test` runs it before pytest; this test runs it too, so pytest alone catches it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: pip install -e '.[dev]' (make setup does)")
    return [found]


def test_the_tree_is_ruff_clean():
    result = subprocess.run([*_ruff(), "check", str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_an_undefined_name(tmp_path):
    """The check can fail: the very bug of issue 44 (an exception caught but never imported)."""
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("def f():\n    try:\n        pass\n    except ConfigError:\n        raise\n")
    result = subprocess.run([*_ruff(), "check", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "F821" in result.stdout and "ConfigError" in result.stdout
