"""DICOM results from the CLI: `llm4seg video`'s --seg-frames / --overlay-sc / --send / --stow, and
`llm4seg dicom-listen` (a storage SCP that segments what it receives)."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from llm4seg.cli.options import JsonOpt
from llm4seg.cli.render import print_json, stderr, stdout
from llm4seg.errors import ConfigError

SegFramesOpt = Annotated[Optional[str], typer.Option(
    "--seg-frames", help="DICOM sources: write a DICOM SEG for these 1-based frames ('1,15', '10-20' or 'all').")]
DicomOutOpt = Annotated[Optional[Path], typer.Option(
    "--dicom-out", help="Folder for the SEGs and overlay.dcm (default: beside --out, named <out>-dicom).")]
OverlayScOpt = Annotated[bool, typer.Option(
    "--overlay-sc", help="DICOM sources: also write the overlaid loop as a multi-frame Secondary Capture.")]
SendOpt = Annotated[list[str], typer.Option(
    "--send", help="C-STORE the DICOM results to AE_TITLE@HOST:PORT (repeatable).")]
StowOpt = Annotated[list[str], typer.Option(
    "--stow", help="STOW-RS the DICOM results to a DICOMweb root, e.g. http://host:8042/dicom-web (repeatable).")]


@dataclass
class DicomOutputs:
    """What `llm4seg video` was asked to write and send as DICOM, checked before any frame runs."""

    seg_frames: str | None
    out_dir: Path | None
    overlay_sc: bool
    send: list[Any] = field(default_factory=list)  # DicomNode
    stow: list[str] = field(default_factory=list)

    @property
    def wanted(self) -> bool:
        """Whether any DICOM result was asked for."""
        return bool(self.seg_frames or self.overlay_sc)

    def check(self, source: str, out: str) -> None:
        """Refuse options that cannot work, before the run: a non-DICOM source, nodes mistyped,
        sending with nothing to send, an output folder that already holds results."""
        from llm4seg.dicom import is_dicom_file
        from llm4seg.runtime.dicom_net import DicomNode

        self.send = [DicomNode.from_text(t) for t in self.send]
        if (self.send or self.stow) and not self.wanted:
            raise ConfigError("--send/--stow have nothing to send", hint="add --seg-frames and/or --overlay-sc")
        if self.wanted and not (is_dicom_file(source) or Path(source).is_dir()):
            raise ConfigError(f"--seg-frames/--overlay-sc need a DICOM source; {source!r} is not one",
                              hint="DICOM results reference the source instance: pass the .dcm file")
        if self.wanted and self.out_dir is None:
            path = Path(out) if not out.startswith("gst:") else Path("segmented")
            self.out_dir = path.with_name(f"{path.stem}-dicom")

    def sink(self, cap: Any, segmenter: Any, mode: str) -> Any:
        """The DicomResults collecting this run's chosen masks (and overlay)."""
        from llm4seg.runtime.dicom_out import Algorithm, DicomResults, frame_numbers_from_text

        numbers = frame_numbers_from_text(self.seg_frames, cap.frame_count) if self.seg_frames else []
        return DicomResults(cap, numbers, Algorithm.from_manifest(segmenter.backend.manifest), self.overlay_sc, mode)

    def finish(self, results: Any) -> dict[str, Any]:
        """Write the results (all or none), then send them; returns what the report says."""
        from llm4seg.runtime.dicom_out import write_datasets

        paths = write_datasets(results.datasets(), self.out_dir)
        return {"dicom_out": str(self.out_dir), "files": [p.name for p in paths], **deliver(paths, self.send, self.stow)}


def deliver(paths: list[Path], nodes: list[Any], stow_urls: list[str]) -> dict[str, Any]:
    """C-STORE to each node and STOW-RS to each URL; returns {"sent": [...]} naming where each went."""
    from llm4seg.runtime.dicom_net import c_store, stow_rs

    sent = []
    for node in nodes:
        sent.append({"to": str(node), "protocol": "C-STORE", "instances": len(c_store(paths, node))})
    for url in stow_urls:
        sent.append({"to": url, "protocol": "STOW-RS", "instances": len(stow_rs(paths, url))})
    return {"sent": sent}


def segment_received(path: Path, segmenter: Any, out_dir: Path, seg_frames: str, overlay_sc: bool,
                     forward: list[Any]) -> dict[str, Any]:
    """Segment one received DICOM file and write (and forward) its results in out_dir/<SOP UID>/."""
    from llm4seg.runtime import VideoPipeline

    outputs = DicomOutputs(seg_frames, out_dir / path.stem, overlay_sc, forward)
    pipeline = VideoPipeline(segmenter, str(path), sink=lambda frame: None)
    results = pipeline.sink = outputs.sink(pipeline.cap, segmenter, "contour")
    pipeline.run()
    return {"instance": path.stem, **outputs.finish(results)}


def dicom_listen(
    engine: Annotated[Path, typer.Option("--engine", help="Artifact: .onnx, .plan or .pt2 from `llm4seg export`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder: received files in incoming/, results per "
                                      "instance in <SOP instance UID>/.")] = Path("dicom-results"),
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 11112,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    ae_title: Annotated[str, typer.Option("--ae-title", help="The AE title this listener answers to.")] = "LLM4SEG",
    seg_frames: Annotated[str, typer.Option("--seg-frames", help="Frames of each received image that get a SEG "
                                            "('1', '1,15', 'all').")] = "1",
    overlay_sc: OverlayScOpt = False,
    forward: Annotated[list[str], typer.Option(
        "--forward", help="C-STORE each result to AE_TITLE@HOST:PORT (repeatable), e.g. back to the PACS.")] = [],  # noqa: B006
    max_instances: Annotated[Optional[int], typer.Option("--max-instances", help="Stop after this many instances "
                                                         "(default: run until Ctrl-C or SIGTERM).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Listen as a DICOM storage SCP; segment every image received and write a SEG per chosen frame.

    \b
    Examples:
      llm4seg dicom-listen --engine art/model.onnx --port 11112 --out results/
      llm4seg dicom-listen --engine art/model.onnx --forward ORTHANC@pacs.local:4242   # SEGs sent on
    Send to it with any C-STORE tool, e.g. storescu 127.0.0.1 11112 -aec LLM4SEG study.dcm
    """
    from llm4seg.runtime import Segmenter
    from llm4seg.runtime.dicom_net import DicomNode, StorageListener

    nodes = [DicomNode.from_text(t) for t in forward]
    if host not in ("127.0.0.1", "localhost", "::1"):
        stderr.print(f"note: --host {host} accepts C-STORE from any machine that reaches it, from any calling AE "
                     "title, without TLS: received images are written to disk and segmented; keep it on a trusted "
                     "network", soft_wrap=True, markup=False)
    log: list[dict[str, Any]] = []
    with Segmenter(engine) as seg:
        def handle(path: Path) -> None:
            try:
                entry = segment_received(path, seg, out, seg_frames, overlay_sc, nodes)
            except Exception as exc:
                entry = {"instance": path.stem, "error": str(exc)}
            log.append(entry)
            if not json_out:
                (stderr if "error" in entry else stdout).print(_line(entry), soft_wrap=True, markup=False)

        listener = StorageListener(out / "incoming", handle, ae_title, host, port).start()
        (stderr if json_out else stdout).print(f"listening as {ae_title}@{host}:{port}; results in {out} (Ctrl-C "
                                               "stops)", soft_wrap=True)
        _serve(listener, max_instances)
    if json_out:
        print_json({"listened": f"{ae_title}@{host}:{port}", "received": listener.received, "results": log})


def _serve(listener: Any, max_instances: int | None) -> None:
    """Until Ctrl-C, SIGTERM or max_instances handled; the listener is stopped on every path."""
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):
            if max_instances is not None and listener.received >= max_instances and listener.drain(0.1):
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        listener.stop()


def _line(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"error: {entry['instance']}: {entry['error']}"
    sent = "; ".join(f"{s['protocol']} {s['instances']} to {s['to']}" for s in entry.get("sent", []))
    return f"{entry['instance']}: wrote {', '.join(entry['files'])} in {entry['dicom_out']}" + (f"; {sent}" if sent else "")
