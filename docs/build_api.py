"""Build the API reference (pdoc HTML) of every llm4seg module: the core, export and runtime.

Run: python docs/build_api.py [--out build/api]   (`make docs`; the test suite builds it too)

Exits non-zero when a module cannot be imported or pdoc cannot resolve a public name; a public
name without a docstring fails tests/test_docstrings.py.
"""

from __future__ import annotations

import argparse
import pkgutil
import sys
import warnings
from pathlib import Path


def module_names() -> list[str]:
    """Every module of the installed llm4seg package (export and runtime included), sorted."""
    import importlib

    names = {"llm4seg"}
    # export/ and runtime/ are installed into the package from their own folders: walk each.
    for package in ("llm4seg", "llm4seg.export", "llm4seg.runtime"):
        names.add(package)
        names |= {m.name for m in pkgutil.walk_packages(importlib.import_module(package).__path__, package + ".")}
    return sorted(names)


def build(out: Path) -> list[str]:
    """Write the HTML reference into `out`; returns pdoc's warnings that matter (import failures,
    unresolved names), leaving out its note that a listed module was already added by its package."""
    import pdoc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*module_names(), output_directory=out)
    return [str(w.message) for w in caught if "has already been added" not in str(w.message)]


def main() -> int:
    """Build, print what went wrong, and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/api"))
    args = parser.parse_args()
    problems = build(args.out)
    for line in problems:
        print(f"pdoc: {line}", file=sys.stderr)
    print(f"wrote {args.out / 'index.html'} ({len(module_names())} modules)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
