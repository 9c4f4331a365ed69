"""Every figure in RESULTS.md names a command that runs today (issue 23): each `python -m
benchmarks...` command names a module that exists and options its --help lists; each `llm4seg`
command a real subcommand and real options."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import typer

from llm4seg.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
# Scripts run on the H200 only or with the device image's packages: their --help needs no GPU either.
SPAN = re.compile(r"`(?:[A-Z_]+=\S+ )*((?:python3? -m benchmarks\.|llm4seg )[^`]+)`")  # env prefixes dropped


def commands() -> list[str]:
    """The backticked commands of RESULTS.md, a span broken over lines joined again."""
    return [" ".join(m.group(1).split()) for m in SPAN.finditer(RESULTS.read_text())]


def options_used(command: str) -> set[str]:
    """--flags of a command line, without [optional] brackets, values or '|' alternatives."""
    return {w.strip("[]").split("=")[0] for w in command.split() if w.strip("[").startswith("--")}


@lru_cache(maxsize=None)
def script_help(module: str, subcommand: str | None = None) -> str:
    """`python -m MODULE [SUBCOMMAND] --help`'s text (a script with subcommands documents each apart)."""
    result = subprocess.run([sys.executable, "-m", module, *([subcommand] if subcommand else []), "--help"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, f"{module} --help failed:\n{result.stderr[-2000:]}"
    return result.stdout


def test_results_cite_commands():
    cited = commands()
    assert sum(c.startswith("python") for c in cited) >= 15 and sum(c.startswith("llm4seg") for c in cited) >= 5


def test_every_benchmark_command_names_a_script_and_options_it_has():
    problems = []
    for command in commands():
        if not command.startswith("python"):
            continue
        words = command.split()
        module = words[2]
        if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
            problems.append(f"{command}: no module {module}")
            continue
        subcommand = words[3] if len(words) > 3 and re.fullmatch(r"[a-z][a-z_-]*", words[3]) else None
        text = script_help(module, subcommand)
        missing = sorted(o for o in options_used(command) if o not in text)
        if missing:
            problems.append(f"{command}: {module} has no {', '.join(missing)}")
    assert not problems, "\n".join(problems)


def test_every_llm4seg_command_in_results_is_real():
    group = typer.main.get_command(app)
    problems = []
    for command in commands():
        if not command.startswith("llm4seg "):
            continue
        sub = group.commands.get(command.split()[1])
        if sub is None:
            problems.append(f"{command}: no subcommand {command.split()[1]!r}")
            continue
        known = {o for p in sub.params for o in (*p.opts, *p.secondary_opts)}
        unknown = sorted(options_used(command) - known)
        if unknown:
            problems.append(f"{command}: {', '.join(unknown)}")
    assert not problems, "\n".join(problems)
