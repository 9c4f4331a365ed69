"""This machine's loopback addresses: one list for every door that asks whether a host is local
(servers warn when they bind elsewhere; shared memory is offered only to a local server)."""

from __future__ import annotations

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback_host(host: str) -> bool:
    """Whether `host` (no port; an IPv6 address with or without brackets) is a loopback address."""
    return host.removeprefix("[").removesuffix("]") in LOOPBACK_HOSTS


def host_of(host_port: str) -> str:
    """The host of HOST:PORT ("[::1]:8001" -> "[::1]", "localhost:8001" -> "localhost")."""
    if host_port.startswith("["):
        return host_port[:host_port.find("]") + 1]
    return host_port.rsplit(":", 1)[0] if ":" in host_port else host_port


__all__ = ["LOOPBACK_HOSTS", "host_of", "is_loopback_host"]
