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
