"""System shared memory between a client and a Triton server on the same machine: a frame's bytes
and its probabilities are written and read in /dev/shm instead of crossing gRPC (issue 47, item 2:
at BUSI frame sizes the gRPC payloads cost 4.5 ms a frame with the model idle, 1.9 ms through
shared memory; at Kvasir's 1214x1019, 29.5 vs 11.9 ms).

Registering shared memory lets a client make the server read and write a region it names, so
servers started by llm4seg keep that protocol behind an admin key (`--grpc-restricted-protocol`).
The process that starts a server has the key; it also writes it to a key file readable by its user
only, and a client of the same user passes that file (`shm_key_file=`, or LLM4SEG_TRITON_KEY_FILE).
Holding the key grants nothing the same user could not already do to the server's process.

One `ShmLane` per client thread: an input and an output region, grown when a frame needs more,
registered under names no other client uses, unregistered and unlinked when closed.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.runtime.core.loopback import host_of, is_loopback_host

ADMIN_HEADER = "llm4seg-admin-key"
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"  # how tritonserver reads it on gRPC
KEY_FILE_ENV = "LLM4SEG_TRITON_KEY_FILE"
KEY_PATTERN = re.compile(r"[0-9a-f]{32}")
KEY_FILE_MAX_BYTES = 64
REGION_STEP_BYTES = 1 << 20  # regions grow in whole MiB: frames of nearby sizes reuse one region


def new_admin_key() -> str:
    """A fresh admin key (32 hex digits) for one server."""
    return secrets.token_hex(16)


def write_key_file(path: Path, key: str) -> Path:
    """Write `key` to `path`, readable and writable by this user only (created with mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return path


def admin_key_from_file(path: str | Path) -> str:
    """The admin key in a key file, read strictly: a regular file, this user's only, at most
    64 bytes, holding 32 hex digits (and an optional newline).

    Raises:
        ConfigError: naming the file and what is wrong with it.
    """
    path = Path(path)
    hint = "pass the key file `llm4seg serve` printed (it exists while that server runs)"
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"the Triton key file {path} cannot be read ({exc.strerror})", hint=hint) from exc
    if not stat.S_ISREG(info.st_mode) or info.st_size > KEY_FILE_MAX_BYTES:
        raise ConfigError(f"the Triton key file {path} is not a regular file of at most {KEY_FILE_MAX_BYTES} bytes",
                          hint=hint)
    if info.st_mode & 0o077:
        raise ConfigError(f"the Triton key file {path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o})",
                          hint=f"chmod 600 {path}")
    text = path.read_bytes()[:KEY_FILE_MAX_BYTES].decode("ascii", errors="replace")
    key = text[:-1] if text.endswith("\n") else text
    if not KEY_PATTERN.fullmatch(key):
        raise ConfigError(f"the Triton key file {path} does not hold a key (expected 32 hex digits)", hint=hint)
    return key


def is_loopback(host_port: str) -> bool:
    """Whether HOST:PORT names this machine by its loopback address."""
    return is_loopback_host(host_of(host_port))


class ShmLane:
    """One thread's input and output regions on one server (see the module).

    Args:
        client: a tritonclient.grpc InferenceServerClient.
        headers: the admin header for the registration calls.
        timeout_s: the most a registration call may take.

    A region too small for a frame is replaced by one at least twice its size under a new name:
    the server keeps a region "in use" for a moment after the response that used it, so the old
    one is unregistered when it can be, at the latest on close.
    """

    def __init__(self, client: Any, headers: dict[str, str], timeout_s: float) -> None:
        self.client, self.headers, self.timeout_s = client, headers, timeout_s
        self.tag = f"llm4seg_client_{os.getpid()}_{secrets.token_hex(6)}"
        self.made = 0
        self.regions: dict[str, tuple[str, Any, int]] = {}  # "in"/"out" -> (name, handle, bytes)
        self.retired: list[tuple[str, Any, int]] = []

    def region(self, side: str, nbytes: int) -> str:
        """The registered name of this lane's `side` region, replaced by a larger one when it cannot
        hold `nbytes`."""
        have = self.regions.get(side)
        if have is not None and have[2] >= nbytes:
            return have[0]
        import tritonclient.utils.shared_memory as shm

        size = -(-max(nbytes, 2 * have[2] if have else 0, 1) // REGION_STEP_BYTES) * REGION_STEP_BYTES
        name, self.made = f"{self.tag}_{side}{self.made}", self.made + 1
        handle = shm.create_shared_memory_region(name, f"/{name}", size, create_only=True)
        try:
            self.client.register_system_shared_memory(name, f"/{name}", size, headers=self.headers,
                                                      client_timeout=self.timeout_s)
        except BaseException:
            shm.destroy_shared_memory_region(handle)
            raise
        if have is not None:
            self.retired.append(have)
        self.regions[side] = (name, handle, size)
        self._release(self.retired, wait_s=0.0)
        return name

    def write_input(self, array: np.ndarray) -> str:
        """Copy `array` into the input region; returns its registered name."""
        import tritonclient.utils.shared_memory as shm

        name = self.region("in", array.nbytes)
        shm.set_shared_memory_region(self.regions["in"][1], [np.ascontiguousarray(array)])
        return name

    def read_output(self, dtype: np.dtype, shape: list[int]) -> np.ndarray:
        """A copy of the output region's first bytes as `dtype` of `shape` (the region is reused)."""
        import tritonclient.utils.shared_memory as shm

        return shm.get_contents_as_numpy(self.regions["out"][1], dtype, shape).copy()

    def forget_registrations(self) -> None:
        """The server lost them (it restarted): new regions are made and registered on next use."""
        import tritonclient.utils.shared_memory as shm

        for _, handle, _ in [*self.regions.values(), *self.retired]:
            shm.destroy_shared_memory_region(handle)
        self.regions, self.retired = {}, []

    def close(self, wait_s: float = 2.0) -> None:
        """Unregister and unlink every region (waiting up to `wait_s` for ones still in use)."""
        regions, self.regions = [*self.regions.values(), *self.retired], {}
        self.retired = []
        self._release(regions, wait_s)

    def _release(self, regions: list[tuple[str, Any, int]], wait_s: float) -> None:
        """Unregister and unlink `regions`. With no time to wait, the ones the server still uses stay
        in the list (for later); after waiting, they are unlinked anyway (the server keeps its
        mapping until it stops)."""
        import tritonclient.utils.shared_memory as shm

        deadline = time.monotonic() + wait_s
        for item in list(regions):
            if self._unregister(item[0], deadline) or wait_s > 0:
                regions.remove(item)
                shm.destroy_shared_memory_region(item[1])

    def _unregister(self, name: str, deadline: float) -> bool:
        """True once `name` is unregistered or the server has no such region; False while the server
        still uses it at `deadline`."""
        while True:
            try:
                self.client.unregister_system_shared_memory(name, headers=self.headers, client_timeout=self.timeout_s)
                return True
            except Exception as exc:  # "in use" for a moment after a response; a server gone holds nothing
                if "in use" not in str(exc):
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)


__all__ = ["ADMIN_HEADER", "GRPC_ADMIN_HEADER", "KEY_FILE_ENV", "ShmLane", "admin_key_from_file", "is_loopback",
           "new_admin_key", "write_key_file"]
