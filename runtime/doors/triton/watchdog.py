"""Keeping a served repository's models alive: `Watchdog` revives a model whose python stub died and
says when a model stops (or starts again) being ready, so a failing model is never silent.

A python stub that dies leaves Triton calling the model ready while every request is answered
"Stub process ... is not healthy"; with `--instances 2` one of two stubs can die while the other
serves. So stubs are counted per model (from /proc: a stub's command line names its model.py), a
count below the one seen at start is a dead stub, and the model is loaded again (each model at
most `max_reloads` times).
"""

from __future__ import annotations

import time
import urllib.request
from typing import Any, Callable

MAX_RELOADS = 3


def model_ready(server: Any, name: str) -> bool:
    """Whether tritonserver says model `name` is ready (asked on its private HTTP port)."""
    url = f"http://127.0.0.1:{server.private_http_port}/v2/models/{name}/ready"
    try:
        with urllib.request.urlopen(url, timeout=2.0) as reply:
            return reply.status == 200
    except OSError:
        return False


class Watchdog:
    """Watches a started, ready TritonServer (see the module).

    Args:
        server: the TritonServer.
        say: called with each message (errors start with "error: ").
        every_s: seconds between checks.
        max_reloads: reloads per model before it is left down (said once).
    """

    def __init__(self, server: Any, say: Callable[[str], None], every_s: float = 2.0,
                 max_reloads: int = MAX_RELOADS) -> None:
        self.server, self.say, self.every_s, self.max_reloads = server, say, every_s, max_reloads
        self.expected = server.stub_counts()  # stubs per python model once ready
        self.reloads: dict[str, int] = {}
        self.down: set[str] = set()

    def dead_stubs(self) -> list[str]:
        """The models with fewer live stubs than at start."""
        counts = self.server.stub_counts()
        return sorted(name for name, n in self.expected.items() if counts.get(name, 0) < n)

    def revive(self, name: str) -> bool:
        """Load model `name` again after a stub died; False once it has been reloaded max_reloads times."""
        self.reloads[name] = self.reloads.get(name, 0) + 1
        count = self.reloads[name]
        if count > self.max_reloads:
            if count == self.max_reloads + 1:
                self.say(f"error: model {name}'s process died again; not reloading it a {count}th time: its calls "
                         f"fail until `serve` is restarted. Server log: {self.server.log_path}")
            return False
        self.say(f"error: model {name}'s python process died; reloading it ({count} of {self.max_reloads})")
        ok = self.server.reload(name)
        self.say(f"model {name} {'reloaded' if ok else 'did not reload: see ' + str(self.server.log_path)}")
        return ok

    def check(self) -> None:
        """One pass: revive dead stubs, then report models that stopped or started being ready."""
        for name in self.dead_stubs():
            if self.server.process.poll() is None:
                self.revive(name)
        for name in self.server.loaded:
            ready = model_ready(self.server, name)
            if not ready and name not in self.down and self.server.process.poll() is None:
                self.down.add(name)
                self.say(f"error: model {name} is no longer ready; calls to it fail until it loads again. "
                         f"Server log: {self.server.log_path}\n{self.server.log_tail(4)}")
            elif ready and name in self.down:
                self.down.discard(name)
                self.say(f"model {name} is ready again")

    def run(self) -> None:
        """Check every `every_s` until the server process ends."""
        next_check = time.monotonic() + self.every_s
        while self.server.process.poll() is None:
            time.sleep(0.25)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.every_s
                self.check()


__all__ = ["MAX_RELOADS", "Watchdog", "model_ready"]
