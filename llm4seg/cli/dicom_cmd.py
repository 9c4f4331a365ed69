"""DICOM from the CLI: the options `llm4seg video` shares (--seg-frames, --overlay-sc, --send, --stow)
and `llm4seg dicom-listen` (a storage SCP that segments what it receives). The behaviour is
llm4seg.runtime.doors.dicom (job, listener); this is options, printing and signals."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from llm4seg.cli.options import JsonOpt
from llm4seg.cli.render import print_json, stderr, stdout

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


def dicom_listen(
    engine: Annotated[Path, typer.Option("--engine", help="Artifact: .onnx, .plan or .pt2 from `llm4seg export`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder: received files in incoming/, results per "
                                      "instance in <SOP instance UID>/.")] = Path("dicom-results"),
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on (0: any free port, printed).")] = 11112,
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
    from llm4seg.runtime.doors.dicom.job import DicomJob
    from llm4seg.runtime.doors.dicom.listener import ListenOptions, SegmentingListener

    job = DicomJob(seg_frames, None, overlay_sc, list(forward))
    options = ListenOptions(ae_title=ae_title, host=host, port=port)
    if options.exposure_note():
        stderr.print(f"note: {options.exposure_note()}", soft_wrap=True, markup=False)
    with Segmenter(engine) as seg:
        listener = SegmentingListener(seg, out, job, options,
                                      report=None if json_out else _print_line).start()
        (stderr if json_out else stdout).print(f"listening as {listener.address}; results in {out} (Ctrl-C stops)",
                                               soft_wrap=True, markup=False)
        _serve(listener, max_instances)
    if json_out:
        print_json({"listened": listener.address, "received": listener.received, "results": listener.log})


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


def _print_line(entry: dict[str, Any]) -> None:
    if "error" in entry:
        stderr.print(f"error: {entry['instance']}: {entry['error']}", soft_wrap=True, markup=False)
        return
    sent = "; ".join(f"{s['protocol']} {s['instances']} to {s['to']}" for s in entry.get("sent", []))
    stdout.print(f"{entry['instance']}: wrote {', '.join(entry['files'])} in {entry['dicom_out']}" + (f"; {sent}" if sent else ""),
                 soft_wrap=True, markup=False)
