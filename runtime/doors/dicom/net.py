"""DICOM networking out: send results to a DICOM node (C-STORE, pynetdicom) or a DICOMweb server
(STOW-RS, dicomweb-client). Listening (the storage SCP) is listener.py.

A node is written `AE_TITLE@HOST:PORT` (e.g. `ORTHANC@127.0.0.1:4242`). Every failure names the
node and what it answered: an association rejected or aborted, a C-STORE status other than
success (its code in hex), an HTTP status from STOW-RS. Nothing is retried silently.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm4seg.errors import ConfigError

CALLING_AE = "LLM4SEG"
TIMEOUT_S = 30.0


def require_dicom(module: str, what: str) -> Any:
    """`module`, or an error naming the `dicom` extra that installs it."""
    from llm4seg._optional import require

    return require(module, what)


@dataclass(frozen=True)
class DicomNode:
    """A DICOM application entity: title, host and port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def from_text(cls, text: str) -> "DicomNode":
        """'AE@host:port' -> DicomNode; a clear error for anything else."""
        title, at, address = text.rpartition("@")
        host, colon, port = address.rpartition(":")
        if not (at and colon and title and host and port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"DICOM node {text!r} is not AE_TITLE@HOST:PORT",
                              hint="e.g. ORTHANC@127.0.0.1:4242 (the title the node answers to, its host and port)")
        if len(title) > 16 or not title.isascii() or "\\" in title:
            raise ConfigError(f"AE title {title!r} of {text!r} is not 1-16 ASCII characters",
                              hint="use the node's configured AE title, e.g. ORTHANC")
        return cls(title, host, int(port))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def _read_all(paths: list[Path]) -> list[Any]:
    """Every file as a pydicom Dataset, or a ConfigError naming the one that is not DICOM."""
    pydicom = require_dicom("pydicom", "reading DICOM")
    datasets = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(str(path)))
        except Exception as exc:  # InvalidDicomError, truncated, unreadable
            raise ConfigError(f"{path} cannot be sent: it is not a readable DICOM file ({exc})",
                              hint="send DICOM Part 10 files (with the DICM preamble)") from None
    return datasets


def c_store(paths: list[Path], node: DicomNode, calling_ae: str = CALLING_AE, no_delay: bool = True) -> list[str]:
    """Send each DICOM file to `node` over one association.

    Args:
        no_delay: send each PDU at once (TCP_NODELAY); False only to measure what it saves.

    Returns:
        the SOP instance UIDs stored.

    Raises:
        ConfigError naming the node and the file when the association fails or a store is refused.
    """
    pynetdicom = require_dicom("pynetdicom", "sending DICOM (C-STORE)")
    datasets = _read_all(paths)
    ae = pynetdicom.AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    for ds in datasets:  # each file's class in the syntax it is stored in
        ae.add_requested_context(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    if not assoc.is_established:
        raise ConfigError(f"DICOM node {node} refused or did not answer the association "
                          f"({'rejected' if assoc.is_rejected else 'aborted' if assoc.is_aborted else 'no answer'})",
                          hint="check the node runs, its AE title and port, and that it accepts this caller "
                               f"({calling_ae})")
    if no_delay:
        _no_delay(assoc)
    stored = []
    try:
        for path, ds in zip(paths, datasets):
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                raise ConfigError(f"DICOM node {node} gave no C-STORE answer for {path.name} (connection lost or "
                                  f"timed out after {TIMEOUT_S:.0f} s)", hint="check the node's log")
            if code not in (0x0000, 0xB000, 0xB006, 0xB007):  # success or a warning (coerced, elements dropped)
                raise ConfigError(f"DICOM node {node} refused {path.name}: C-STORE status 0x{code:04X}",
                                  hint="0xA7xx: out of resources; 0xA9xx / 0xC0xx: the node cannot store this "
                                       "SOP class or data set (check its log)")
            stored.append(str(ds.SOPInstanceUID))
    finally:
        assoc.release()
    return stored


def _no_delay(assoc: Any) -> None:
    """Send each PDU at once (TCP_NODELAY): with Nagle's algorithm a C-STORE's command and data
    set wait on the peer's delayed ACK, about 40 ms per instance (benchmarks/dicom_results.py)."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def stow_rs(paths: list[Path], url: str) -> list[str]:
    """Store the DICOM files on the DICOMweb server at `url` (its base, e.g.
    http://127.0.0.1:8042/dicom-web) in one multipart request. Returns the SOP instance UIDs the
    server's answer says it stored.

    Raises:
        ConfigError naming the server and its HTTP answer.
    """
    web = require_dicom("dicomweb_client", "sending DICOMweb (STOW-RS)")
    requests = require_dicom("requests", "sending DICOMweb (STOW-RS)")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"DICOMweb URL {url!r} is not http(s)://", hint="e.g. http://127.0.0.1:8042/dicom-web")
    datasets = _read_all(paths)
    client = web.DICOMwebClient(url=url)
    try:
        answer = client.store_instances(datasets)
    except requests.exceptions.HTTPError as exc:
        raise ConfigError(f"DICOMweb server {url} refused the store: {exc}",
                          hint="check the URL is the DICOMweb root and the server's log") from None
    except requests.exceptions.RequestException as exc:
        raise ConfigError(f"DICOMweb server {url} did not answer ({type(exc).__name__})",
                          hint="check the server runs and the URL") from None
    return _stored_by_answer(answer, datasets, url)


def _stored_by_answer(answer: Any, datasets: list[Any], url: str) -> list[str]:
    """The SOP instance UIDs the server's STOW-RS answer says it stored (its ReferencedSOPSequence);
    an instance it failed or left unnamed is an error naming it (an HTTP 200 alone stores nothing)."""
    failed = answer.get("FailedSOPSequence") if answer is not None else None
    if failed:
        reasons = [f"{item.get('ReferencedSOPInstanceUID')}: 0x{int(item.get('FailureReason', 0)):04X}" for item in failed]
        raise ConfigError(f"DICOMweb server {url} refused {len(failed)} instance(s): {', '.join(reasons)}",
                          hint="check the server's log")
    stored = [str(item.get("ReferencedSOPInstanceUID")) for item in (answer.get("ReferencedSOPSequence") or [])] \
        if answer is not None else []
    missing = [str(ds.SOPInstanceUID) for ds in datasets if str(ds.SOPInstanceUID) not in stored]
    if missing:
        raise ConfigError(f"DICOMweb server {url} answered the store but lists {len(missing)} of {len(datasets)} "
                          f"instance(s) as neither stored nor failed (e.g. {missing[0]})",
                          hint="check the URL is the DICOMweb root and the server's log; nothing is counted as stored "
                               "unless the server says so")
    return [uid for uid in stored if uid in {str(ds.SOPInstanceUID) for ds in datasets}]


__all__ = ["CALLING_AE", "DicomNode", "c_store", "require_dicom", "stow_rs"]
