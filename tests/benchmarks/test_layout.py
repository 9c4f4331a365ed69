"""benchmarks/ has a place for each kind (issue 23): figure scripts that RESULTS.md cites, the
GPU-run tooling in benchmarks/gpu/, every module importable as a package module without
sys.path edits."""

from __future__ import annotations

import importlib
import re

from tests.benchmarks import BENCHMARKS

# Figure scripts RESULTS.md need not cite, and why.
NOT_FIGURES = {
    "train_ways": "the two training steps shared by bench_train_cpu and gpu/gpu_train_busi",
    "concurrent_runs": "its GPU figures wait for a device slot (gpu/gpu_session runs it there)",
}


def modules() -> list[str]:
    """benchmarks.* and benchmarks.gpu.* module names, packages left out."""
    return sorted(".".join(p.relative_to(BENCHMARKS.parent).with_suffix("").parts)
                  for p in BENCHMARKS.rglob("*.py") if p.name != "__init__.py")


def test_no_benchmark_edits_sys_path():
    editing = [m for m in modules() if "sys.path" in (BENCHMARKS.parent / (m.replace(".", "/") + ".py")).read_text()]
    assert editing == []


def test_every_benchmark_imports_as_a_package_module():
    for name in modules():
        importlib.import_module(name)


def test_every_figure_script_is_cited_by_results():
    results = (BENCHMARKS / "RESULTS.md").read_text()
    figures = [m for m in modules() if not m.startswith("benchmarks.gpu.") and m.split(".")[-1] not in NOT_FIGURES]
    uncited = [m for m in figures if not re.search(rf"python3? -m {re.escape(m)}\b", results)]
    assert len(figures) >= 10 and uncited == []
