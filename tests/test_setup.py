"""The set-up the README promises, checked where a test can (issue 34, item 8)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_setup_waits_for_the_dpkg_lock_then_says_to_rerun():
    """Another apt holding the dpkg lock failed `make setup` at once: every apt-get call of the
    Makefile waits for the lock (bounded), and a failure says to rerun."""
    makefile = (ROOT / "Makefile").read_text()
    wait = re.search(r"^APT_WAIT := (.+)$", makefile, re.M).group(1)
    assert "DPkg::Lock::Timeout=" in wait
    commands = [line for line in makefile.splitlines() if not line.lstrip().startswith("#")]
    calls = re.findall(r"apt-get (\S+) (?:-y -q )?(?:install|update)", "\n".join(commands))
    assert len(calls) == 3 and all(c == "$(APT_WAIT)" for c in calls), calls
    unwaited = [line for line in commands if re.search(r"apt-get (?:install|update)", line) and "echo" not in line]
    assert not unwaited, unwaited  # none without the wait (the hint printed to non-root users is text)
    assert "rerun make setup" in makefile
    # Issue 45, item 8: the first apt call was silent for up to 5 minutes while it waited for the lock.
    before = makefile.split("apt-get $(APT_WAIT) install", 1)[0].rsplit("\n", 6)[-6:]
    assert any("echo" in line and "waits for it, up to 5 minutes" in line for line in before), before
    # apt-get itself accepts the option (as it runs in CI: Debian's apt)
    if subprocess.run(["which", "apt-get"], capture_output=True).returncode == 0:
        probe = subprocess.run(["apt-get", *wait.split(), "--help"], capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr


def test_the_next_step_a_training_prints_runs_as_printed(tmp_path):
    """Issue 45, item 7: `make demo` ended with `next: llm4seg eval ...`, which fails as printed in a
    shell without .venv/bin on PATH; the line now names the installed script where it is not on PATH."""
    import os
    import shlex
    import sys

    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # a fresh shell: the venv is not activated
    train = subprocess.run([sys.executable, "-m", "llm4seg.cli.main", "train", "--model", "cmunext_s", "--image-size",
                            "32", "--epochs", "1", "--synthetic-count", "12", "--batch-size", "4", "--device", "cpu",
                            "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path, env=env,
                           timeout=600)
    assert train.returncode == 0, train.stderr[-2000:]
    line = next(line for line in train.stdout.splitlines() if line.startswith("next: "))
    command = shlex.split(line[len("next: "):])
    assert command[0] != "llm4seg" and command[1] == "eval", line
    evaluated = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
