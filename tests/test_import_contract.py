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
# The light, torch-free owners of the core that the runtime shares: the frame contract (before the
# model) and the mask stage with its parts (after it), geometry, DICOM decoding, the strict JSON reader.
LIGHT_CORE = ("llm4seg.errors", "llm4seg.fileio", "llm4seg._optional", "llm4seg.metrics", "llm4seg.contract",
              "llm4seg.dicom", "llm4seg.geometry", "llm4seg.mask_stage", "llm4seg.quality", "llm4seg.smoothing",
              "llm4seg.strict_json", "llm4seg.motion")
RUNTIME_MAY_USE = (*LIGHT_CORE, "llm4seg.runtime")
# A door module that imports its SDK at module level: imported only when that door is used (its
# package's __getattr__ loads it), never by `import llm4seg.runtime` (test_runtime_import_stays_light).
SDK_MODULES = {"runtime/doors/holoscan/operators.py": ("holoscan",)}
# Nothing of these at the runtime's module level: an embedded box installs numpy, OpenCV and onnxruntime only.
HEAVY = ("torch", "transformers", "onnx", "onnxscript", "tensorrt", "tensorrt_rtx_bindings", "cuda", "polygraphy",
         "matplotlib", "safetensors", "gguf", "huggingface_hub", "PIL", "triton", "av", "gi", "holoscan", "cupy",
         "tritonclient", "yaml")
# Where each source folder is installed (setup.py maps export/ and runtime/ into the package).
PACKAGE_OF = {"llm4seg": "llm4seg", "export": "llm4seg.export", "runtime": "llm4seg.runtime"}


def module_name(path: Path) -> str:
    """The dotted name `path` is installed as (runtime/core/backends/base.py -> llm4seg.runtime.core.backends.base)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    dotted = [*PACKAGE_OF[parts[0]].split("."), *parts[1:]]
    return ".".join(dotted[:-1] if dotted[-1] == "__init__" else dotted)


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, source: str | None = None) -> list[tuple[str, bool]]:
    """(module, at_module_level) for every import in a file: absolute and relative statements,
    `from pkg import sub` as pkg.sub too, and importlib.import_module / __import__ of a constant."""
    tree = ast.parse(path.read_text() if source is None else source)
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(path, node)
            found.append((module, id(node) in top))
            found += [(f"{module}.{a.name}", id(node) in top) for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.args[0].value, False))
    return found


def test_runtime_depends_on_neither_export_nor_the_training_code():
    bad = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        for module, top_level in imports(path):
            if module.startswith("llm4seg") and not module.startswith(RUNTIME_MAY_USE):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
            sdk = SDK_MODULES.get(str(path.relative_to(ROOT)), ())
            if module.split(".")[0] in HEAVY and top_level and module.split(".")[0] not in sdk:
                bad.append(f"{path.relative_to(ROOT)} imports {module} at module level")
    assert not bad, bad


def test_the_frame_runtime_never_imports_a_door():
    """runtime/core is what every door goes through: it imports no door and no tool."""
    bad = [f"{path.relative_to(ROOT)} imports {module}" for path in sorted((ROOT / "runtime" / "core").rglob("*.py"))
           for module, _ in imports(path) if module.startswith(("llm4seg.runtime.doors", "llm4seg.runtime.tools"))]
    assert not bad, bad


def test_the_light_core_stays_light():
    """What the runtime shares with the core imports nothing heavy and none of the core's model code."""
    bad = []
    for name in LIGHT_CORE:
        base = ROOT / "llm4seg" / name.split(".", 1)[1]
        for path in sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]:
            for module, top_level in imports(path):
                if module.startswith("llm4seg") and not module.startswith(LIGHT_CORE):
                    bad.append(f"{path.relative_to(ROOT)} imports {module}")
                if module.split(".")[0] in HEAVY and top_level:
                    bad.append(f"{path.relative_to(ROOT)} imports {module} at module level")
    assert not bad, bad


def test_core_never_imports_export_or_runtime():
    bad = [f"{path.relative_to(ROOT)} imports {module}"
           for path in sorted((ROOT / "llm4seg").rglob("*.py")) if "cli" not in path.parts
           for module, _ in imports(path) if module.startswith(("llm4seg.export", "llm4seg.runtime"))]
    assert not bad, bad


def _probe(source: str, where: str = "runtime/core/backends/probe.py") -> list[tuple[str, bool]]:
    """The imports `source` would have as the file `where` (nothing is written into the package)."""
    return imports(ROOT / where, source)


def test_the_checker_sees_imports_inside_functions():
    found = _probe("import numpy\n\ndef f():\n    from llm4seg.export.deploy import DeployNet\n")
    assert ("llm4seg.export.deploy", False) in found and ("numpy", True) in found


def test_the_checker_sees_every_escape():
    """Issue 23: relative imports, `from llm4seg import export` and importlib escaped it."""
    assert ("llm4seg.export.deploy", False) in _probe("def f():\n    from ....export.deploy import DeployNet\n")
    assert ("llm4seg.runtime.core.backends.base", True) in _probe("from .base import Backend\n")
    assert ("llm4seg.export", True) in _probe("from llm4seg import export\n")
    assert ("llm4seg.training.loop", False) in _probe(
        "import importlib\n\ndef f():\n    importlib.import_module('llm4seg.training.loop')\n")
    assert ("onnx", True) in _probe("import onnx\n") and "onnx" in HEAVY and "tensorrt" in HEAVY
    assert module_name(ROOT / "runtime" / "core" / "backends" / "__init__.py") == "llm4seg.runtime.core.backends"
