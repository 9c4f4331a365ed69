"""A DICOM storage SCP (`llm4seg dicom-listen`): each instance received is written to `incoming/`
and handed to a handler on a worker thread, so a slow model never blocks an association.

What a peer sends is not trusted:
- a SOP Instance UID becomes a file and folder name only when it follows the UID grammar (PS3.5
  9.1: numeric components without leading zeros, no empty one, at most 64 characters), and the
  path built from it is proven to stay inside `incoming/` or `--out`;
- associations are capped in all (`max_associations`) and per calling address (`max_per_peer`),
  and one that stays idle for `idle_timeout_s` is dropped, so idle peers cannot lock others out;
- `incoming/` has a quota (`max_incoming_mb`): past it, C-STORE answers 0xA700 (out of
  resources) and the sender keeps its copy; a received file is removed once its results are written;
- each instance has a time budget (`max_instance_s`) and the strict DICOM reader bounds what it
  declares (frames, pixels) against its bytes, so one instance cannot hold the worker forever.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from llm4seg.errors import ConfigError
from llm4seg.runtime.core.loopback import is_loopback_host
from llm4seg.runtime.doors.dicom.net import require_dicom

UID_GRAMMAR = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0xA700, 0xC000


def valid_uid(value: Any) -> bool:
    """Whether `value` is a DICOM UID by the standard's grammar (PS3.5 9.1)."""
    text = str(value) if value is not None else ""
    return 0 < len(text) <= 64 and bool(UID_GRAMMAR.match(text))


def path_inside(folder: Path, name: str) -> Path:
    """folder/name, proven to stay inside `folder` (a ConfigError otherwise)."""
    path = (folder / name).resolve()
    if path.parent != folder.resolve():
        raise ConfigError(f"{name!r} would leave {folder}", hint="a peer's value is never a path")
    return path


def check_ae_title(title: str, what: str = "--ae-title") -> str:
    """An AE title as DICOM allows it: 1-16 ASCII characters, no backslash or control character."""
    if not (isinstance(title, str) and 0 < len(title.strip()) <= 16 and title.isascii() and title.isprintable()
            and "\\" not in title):
        raise ConfigError(f"{what} {title!r} is not 1-16 printable ASCII characters (no backslash)",
                          hint="e.g. --ae-title LLM4SEG")
    return title


@dataclass
class ListenOptions:
    """How the listener answers (the options of `llm4seg dicom-listen`).

    Args:
        ae_title: the AE title it answers to.
        host, port: where it listens (port 0: any free port, read back in `address`).
        max_associations: associations open at once, in all; max_per_peer: from one address.
        idle_timeout_s: an association silent this long is dropped.
        max_incoming_mb: the most `incoming/` may hold.
        max_instance_s: the most one instance may take to segment.
        keep_received: keep received files in `incoming/` after their results are written.
    """

    ae_title: str = "LLM4SEG"
    host: str = "127.0.0.1"
    port: int = 11112
    max_associations: int = 8
    max_per_peer: int = 2
    idle_timeout_s: float = 30.0
    max_incoming_mb: float = 2048.0
    max_instance_s: float = 600.0
    keep_received: bool = False

    def check(self) -> "ListenOptions":
        """Refuse values the listener cannot run with, naming the option."""
        check_ae_title(self.ae_title)
        if not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            raise ConfigError(f"--port {self.port!r} is not in 0-65535", hint="e.g. --port 11112 (0: any free port)")
        for name in ("max_associations", "max_per_peer", "idle_timeout_s", "max_incoming_mb", "max_instance_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} {getattr(self, name)!r} must be > 0", hint="the defaults are safe")
        return self

    def exposure_note(self) -> str | None:
        """What listening beyond this machine means (None on loopback)."""
        if is_loopback_host(self.host):
            return None
        return (f"--host {self.host} accepts C-STORE from any machine that reaches it, from any calling AE title, "
                "without TLS: received images are written to disk and segmented; keep it on a trusted network")


class StorageListener:
    """A storage SCP: each valid instance received is written to `incoming/` (atomically) and
    handed to `handle(path)` on one worker thread; what `handle` raises is kept in `errors`."""

    def __init__(self, incoming: Path, handle: Callable[[Path], None], options: ListenOptions | None = None) -> None:
        self.incoming, self.handle = Path(incoming), handle
        self.options = (options or ListenOptions()).check()
        self.errors: list[str] = []
        self.received = 0
        self.refused: list[str] = []
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._server: Any = None
        self._worker = threading.Thread(target=self._work, name="llm4seg-dicom-worker", daemon=True)

    @property
    def address(self) -> str:
        """AE_TITLE@HOST:PORT as listening (the port the system gave for port 0)."""
        port = self._server.server_address[1] if self._server is not None else self.options.port
        return f"{self.options.ae_title}@{self.options.host}:{port}"

    def _ae(self) -> Any:
        pynetdicom = require_dicom("pynetdicom", "listening for DICOM (storage SCP)")
        o = self.options
        ae = pynetdicom.AE(ae_title=o.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = o.idle_timeout_s
        ae.maximum_associations = o.max_associations
        ae.supported_contexts = pynetdicom.AllStoragePresentationContexts
        # Uncompressed, RLE, JPEG and JPEG 2000 as sent: AllStoragePresentationContexts offers only
        # the uncompressed syntaxes.
        for cx in ae.supported_contexts:
            cx.transfer_syntax = [*pynetdicom.ALL_TRANSFER_SYNTAXES]
        ae.add_supported_context("1.2.840.10008.1.1")  # C-ECHO (verification)
        return ae, pynetdicom.evt

    def start(self) -> "StorageListener":
        """Start listening (returns at once)."""
        ae, evt = self._ae()
        self.incoming.mkdir(parents=True, exist_ok=True)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REQUESTED, self._on_requested)]
        try:
            self._server = ae.start_server((self.options.host, self.options.port), block=False, evt_handlers=handlers)
        except (OSError, OverflowError) as exc:
            raise ConfigError(f"cannot listen on {self.options.host}:{self.options.port} "
                              f"({getattr(exc, 'strerror', None) or exc})",
                              hint="pick a free --port (another listener or Orthanc may hold it)") from None
        self._worker.start()
        return self

    def _on_requested(self, event: Any) -> None:
        """Reject an association from a peer that already holds `max_per_peer` (transient, local limit)."""
        peer = event.assoc.requestor.address
        same = [a for a in self._server.active_associations if a is not event.assoc and a.requestor.address == peer]
        if len(same) >= self.options.max_per_peer:
            self.refused.append(f"{peer}: more than {self.options.max_per_peer} associations at once")
            event.assoc.acse.send_reject(0x02, 0x03, 0x02)  # rejected-transient, service provider (presentation), local limit

    def _incoming_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.incoming.glob("*.dcm") if p.is_file())

    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        uid = ds.get("SOPInstanceUID")
        if not valid_uid(uid):  # never a file name: refused
            self.refused.append(f"SOP Instance UID {str(uid)[:80]!r} is not a UID")
            return CANNOT_UNDERSTAND
        if self._incoming_bytes() > self.options.max_incoming_mb * 2**20:
            self.refused.append(f"{uid}: incoming/ is over its quota of {self.options.max_incoming_mb:g} MiB")
            return OUT_OF_RESOURCES
        path = path_inside(self.incoming, f"{uid}.dcm")
        tmp = path.with_name(f".{uid}.tmp{os.getpid()}")
        try:
            ds.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, path)
        except (OSError, ValueError):
            tmp.unlink(missing_ok=True)
            return OUT_OF_RESOURCES  # the sender keeps its copy
        self.received += 1
        self._queue.put(path)
        return 0x0000

    def _work(self) -> None:
        while (path := self._queue.get()) is not None:
            try:
                self.handle(path)
            except Exception as exc:  # one bad instance never stops the listener
                self.errors.append(f"{path.name}: {exc}")
            finally:
                if not self.options.keep_received:
                    path.unlink(missing_ok=True)
                self._queue.task_done()

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Wait until every received instance is handled; False when `timeout_s` ran out first."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True).start()
        return done.wait(timeout_s)

    def stop(self) -> None:
        """Stop listening, finish the instances received, stop the worker."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()


@dataclass
class SegmentingListener:
    """`dicom-listen` as a Python object: a StorageListener whose handler segments each received
    instance with `segmenter` and writes its results in `out/<SOP instance UID>/` (the DicomJob's
    SEGs and overlay, sent on to its nodes, and frames.jsonl).

    Args:
        segmenter: a loaded Segmenter.
        out: the output folder (received files in out/incoming/).
        job: what to write and where to send (DicomJob; its out_dir is set per instance).
        options: ListenOptions.
        report: called with each instance's report line (a dict; "error" on failure), or None.
    """

    segmenter: Any
    out: Path
    job: Any
    options: ListenOptions = field(default_factory=ListenOptions)
    report: Callable[[dict[str, Any]], None] | None = None
    log: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.listener = StorageListener(self.out / "incoming", self._handle, self.options)

    def _handle(self, path: Path) -> None:
        from llm4seg.runtime.doors.dicom.job import segment_instance

        try:
            results = path_inside(self.out, path.stem)
            entry = _with_budget(self.options.max_instance_s,
                                 lambda stop: segment_instance(path, self.segmenter, results, self.job, stop=stop))
        except Exception as exc:
            entry = {"instance": path.stem, "error": str(exc)}
        self.log.append(entry)
        if self.report is not None:
            self.report(entry)

    def start(self) -> "SegmentingListener":
        """Start listening (returns at once)."""
        self.listener.start()
        return self

    @property
    def address(self) -> str:
        """AE_TITLE@HOST:PORT as listening."""
        return self.listener.address

    @property
    def received(self) -> int:
        """Instances received so far."""
        return self.listener.received

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Wait until every received instance is handled."""
        return self.listener.drain(timeout_s)

    def stop(self) -> None:
        """Stop listening and finish what was received."""
        self.listener.stop()


def _with_budget(seconds: float, run: Callable[[threading.Event], dict[str, Any]]) -> dict[str, Any]:
    """run(stop) with `stop` set after `seconds`; a run that was stopped is an error naming the budget."""
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    try:
        entry = run(stop)
    finally:
        timer.cancel()
    if stop.is_set():
        raise ConfigError(f"the instance took longer than {seconds:g} s to segment: stopped, no result kept",
                          hint="a very long cine: raise max_instance_s, or send it in parts")
    return entry


__all__ = ["ListenOptions", "SegmentingListener", "StorageListener", "check_ae_title", "path_inside", "valid_uid"]
