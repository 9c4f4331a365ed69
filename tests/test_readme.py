"""The README stays true (issue 13, item 1): its Python blocks run, in order, in one namespace
(with a generated clip and exported artifacts where they expect files), and every `llm4seg`
command line in its shell blocks uses only options that command has."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import click
import numpy as np
import pytest
import typer

from llm4seg.cli.main import app

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.slow
def test_python_blocks_run(tmp_path, monkeypatch, exported):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(exported[0], tmp_path / "artifacts")
    writer = cv2.VideoWriter("ultrasound.mp4", cv2.VideoWriter_fourcc(*"mp4v"), 10, (80, 64))
    for i in range(5):
        writer.write(np.full((64, 80, 3), 30 * i, np.uint8))
    writer.release()
    namespace: dict = {}
    code = blocks("python")
    assert len(code) >= 3
    for block in code:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102  (our own README)
    listed = re.search(r"# (\['cmunext'.*?\])", code[0], flags=re.S).group(1).replace("#", "")
    assert eval(listed) == namespace["llm4seg"].list_models()  # noqa: S307  (the documented output)
    assert namespace["mask"].shape == (64, 80) and namespace["shown"].shape == (64, 80, 3)


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def test_cli_lines_use_real_options():
    group = typer.main.get_command(app)
    lines = [line.split("#")[0].strip() for block in blocks("bash") for line in block.splitlines()]
    lines = [line for line in lines if line.startswith("llm4seg ")]
    assert len(lines) >= 8
    for line in lines:
        words = line.split()
        command = group.commands.get(words[1])
        assert command is not None, line
        used = {w.strip("[]").split("=")[0] for w in words[2:] if w.strip("[").startswith("-")}
        unknown = used - _options(command) - {"-"}
        assert not unknown, f"{line}: {sorted(unknown)}"
