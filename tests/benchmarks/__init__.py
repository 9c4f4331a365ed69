"""Tests of the benchmark scripts' reusable parts."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """Import benchmarks.<name>, or benchmarks.gpu.<name> for the GPU-run tooling."""
    package = "benchmarks.gpu" if (BENCHMARKS / "gpu" / f"{name}.py").is_file() else "benchmarks"
    return importlib.import_module(f"{package}.{name}")
