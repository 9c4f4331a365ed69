"""The runtime's shape, checked on the source (issue 43): small modules and functions, CLI commands
that only wire, and no import circle, so the tree keeps showing the design (the frame runtime in
runtime/core, the doors into it in runtime/doors)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_import_contract import ROOT, imports, module_name

MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_COMMAND_BODY_LINES = 400, 60, 30


def _runtime_files() -> list[Path]:
    return sorted((ROOT / "runtime").rglob("*.py"))


def test_no_runtime_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in _runtime_files() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, long


def test_no_runtime_function_over_60_lines():
    long = []
    for path in _runtime_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def _body_lines(path: Path, name: str) -> int:
    """Lines of a function's body after its docstring."""
    node = next(n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef) and n.name == name)
    body = node.body[1:] if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) else node.body
    return body[-1].end_lineno - body[0].lineno + 1


def test_video_and_serve_commands_only_wire():
    sizes = {name: _body_lines(ROOT / "llm4seg" / "cli" / f"{name}_cmd.py", name) for name in ("video", "serve")}
    assert all(n < MAX_COMMAND_BODY_LINES for n in sizes.values()), sizes


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_the_runtime():
    """Imports at any level count (the GStreamer door and the video sinks imported each other)."""
    modules = {module_name(p): p for p in _runtime_files()}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for module, _ in imports(path):
            while module and module not in modules:  # `from pkg import name`: the module part
                module = module.rpartition(".")[0]
            if module and module != name and not name.startswith(module + "."):  # a package's own __init__
                targets.add(module)
        graph[name] = targets
    assert not _cycles(graph), _cycles(graph)


def test_the_checker_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
