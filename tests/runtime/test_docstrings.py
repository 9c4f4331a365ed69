"""The runtime is the API users embed: every public class, function and method in runtime/ says
what it does (issue 23, the runtime part; export and the core are not yet covered)."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def undocumented(path: Path) -> list[str]:
    """Public top-level classes/functions and their public methods without a docstring."""
    missing = []
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
            continue
        if not ast.get_docstring(node):
            missing.append(node.name)
        if isinstance(node, ast.ClassDef):
            missing += [f"{node.name}.{m.name}" for m in node.body
                        if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_")
                        and not ast.get_docstring(m)]
    return missing


def test_every_public_runtime_name_has_a_docstring():
    missing = {str(p.relative_to(RUNTIME)): names for p in sorted(RUNTIME.rglob("*.py")) if (names := undocumented(p))}
    assert not missing, missing


def test_the_check_sees_a_missing_docstring(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text('def f():\n    pass\n\n\nclass C:\n    """C."""\n\n    def g(self):\n        pass\n\n'
                      '    def _h(self):\n        pass\n')
    assert undocumented(sample) == ["f", "C.g"]
