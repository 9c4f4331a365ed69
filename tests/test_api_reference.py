"""The generated API reference (issue 23): pdoc builds a page for every module of the core, export
and runtime, with the docstrings users read (a missing docstring fails tests/test_docstrings.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import installed_or_skip

ROOT = Path(__file__).resolve().parents[1]


def test_the_api_reference_builds_a_page_for_every_module(tmp_path):
    installed_or_skip(lambda: __import__("pdoc"), "pdoc", "pip install -e '.[docs]' (in the dev extra)")
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "build_api.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    sources = [p for folder in ("llm4seg", "export", "runtime") for p in (ROOT / folder).rglob("*.py")]
    pages = {p.relative_to(tmp_path).with_suffix("").as_posix() for p in tmp_path.rglob("*.html")}
    expected = set()
    for path in sources:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        parts = (["llm4seg"] if parts[0] == "llm4seg" else ["llm4seg", parts[0]]) + parts[1:]
        expected.add("/".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert expected - pages == set(), sorted(expected - pages)
    page = (tmp_path / "llm4seg" / "runtime" / "core" / "comparator.html").read_text()
    assert "The one comparator: every gate" in page and "One reference and the frames it was computed on" in page
