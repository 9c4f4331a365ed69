"""Every public class, function and method of the core, export and runtime says what it does
(issue 23), and the generated API reference (pdoc) builds a page for every module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("llm4seg", "export", "runtime")


def undocumented(path: Path) -> list[str]:
    """Public top-level classes/functions and their public methods without a docstring (a module
    without one is named "<module>")."""
    tree = ast.parse(path.read_text())
    missing = [] if ast.get_docstring(tree) else ["<module>"]
    for node in tree.body:
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
            continue
        if not ast.get_docstring(node):
            missing.append(node.name)
        if isinstance(node, ast.ClassDef):
            missing += [f"{node.name}.{m.name}" for m in node.body
                        if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and not m.name.startswith("_")
                        and not ast.get_docstring(m)]
    return missing


def test_every_public_name_has_a_docstring():
    missing = {str(p.relative_to(ROOT)): names for folder in SOURCES for p in sorted((ROOT / folder).rglob("*.py"))
               if (names := undocumented(p))}
    assert not missing, missing


def test_the_check_sees_a_missing_docstring(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text('"""M."""\n\n\ndef f():\n    pass\n\n\nclass C:\n    """C."""\n\n    def g(self):\n        pass\n\n'
                      '    def _h(self):\n        pass\n')
    assert undocumented(sample) == ["f", "C.g"]


def test_a_module_without_a_docstring_is_named(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("X = 1\n")
    assert undocumented(sample) == ["<module>"]
