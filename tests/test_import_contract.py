"""The one-way doors, checked on the source (issue 9, item 18):

- llm4seg core (models, data, training, checkpoint, ...) never imports export or runtime;
  only the CLI, the outermost layer, wires them together;
- export may use the core and the runtime (it records what the runtime checks);
- runtime imports neither export nor the core's model/training/data code, at any level, and no
  torch/transformers at module level (its torch backend imports torch inside, when chosen).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_MAY_USE = ("llm4seg.errors", "llm4seg.fileio", "llm4seg._optional", "llm4seg.metrics", "llm4seg.runtime")
HEAVY = ("torch", "transformers")


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at_module_level) for every import statement in a file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def test_runtime_depends_on_neither_export_nor_the_training_code():
    bad = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        for module, top_level in imports(path):
            if module.startswith("llm4seg") and not module.startswith(RUNTIME_MAY_USE):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
            if module.split(".")[0] in HEAVY and top_level:
                bad.append(f"{path.relative_to(ROOT)} imports {module} at module level")
    assert not bad, bad


def test_core_never_imports_export_or_runtime():
    bad = [f"{path.relative_to(ROOT)} imports {module}"
           for path in sorted((ROOT / "llm4seg").rglob("*.py")) if "cli" not in path.parts
           for module, _ in imports(path) if module.startswith(("llm4seg.export", "llm4seg.runtime"))]
    assert not bad, bad


def test_the_checker_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\n\ndef f():\n    from llm4seg.export.deploy import DeployNet\n")
    assert ("llm4seg.export.deploy", False) in imports(probe) and ("numpy", True) in imports(probe)
