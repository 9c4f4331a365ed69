"""The DICOM job of a run, as a Python API: what to write (a SEG per chosen frame, the overlaid loop
as a Secondary Capture), where (a folder checked before the first frame), where to send it
(C-STORE nodes, STOW-RS servers), and segmenting one received instance (`dicom-listen`).

    job = DicomJob(seg_frames="1,15", out_dir=Path("results"), overlay_sc=True, send=["PACS@host:104"])
    job.check("cine.dcm")                          # refused before any frame
    results = job.sink(pipeline.cap, seg.entry)    # a pipeline sink: tee it before the video sink
    ...run the pipeline...
    report = job.finish(results)                   # written (all or none), then sent
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm4seg.errors import ConfigError
from llm4seg.fileio import write_jsonl_atomic
from llm4seg.runtime.doors.dicom.net import DicomNode, c_store, stow_rs
from llm4seg.runtime.doors.dicom.results import DicomResults, write_datasets
from llm4seg.runtime.doors.dicom.seg import Algorithm, frame_numbers_from_text

FRAME_LOG = "frames.jsonl"  # per instance result folder: one mask-stage record per frame


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


@dataclass
class DicomJob:
    """What a run writes and sends as DICOM (see the module).

    Args:
        seg_frames: the 1-based frames that get a SEG ('1,15', '10-20', 'all'), or None.
        out_dir: the folder for the results (default: beside the video output, `<out>-dicom`).
        overlay_sc: also write the overlaid loop as a multi-frame Secondary Capture.
        send: C-STORE nodes, 'AE_TITLE@HOST:PORT' or DicomNode.
        stow: DICOMweb roots for STOW-RS.
    """

    seg_frames: str | None = None
    out_dir: Path | None = None
    overlay_sc: bool = False
    send: list[Any] = field(default_factory=list)
    stow: list[str] = field(default_factory=list)

    @property
    def wanted(self) -> bool:
        """Whether any DICOM result was asked for."""
        return bool(self.seg_frames or self.overlay_sc)

    def check(self, source: str | Path, out: str | None = None) -> "DicomJob":
        """Refuse, before the run, what cannot work: a non-DICOM source, nodes mistyped, sending with
        nothing to send, an output folder that is an existing file or inside the source's folder."""
        from llm4seg.dicom import is_dicom_file

        self.send = [n if isinstance(n, DicomNode) else DicomNode.from_text(n) for n in self.send]
        if (self.send or self.stow) and not self.wanted:
            raise ConfigError("--send/--stow have nothing to send", hint="add --seg-frames and/or --overlay-sc")
        if not self.wanted:
            return self
        source = Path(source)
        if not (is_dicom_file(source) or source.is_dir()):
            raise ConfigError(f"--seg-frames/--overlay-sc need a DICOM source; {str(source)!r} is not one",
                              hint="DICOM results reference the source instance: pass the .dcm file")
        if self.out_dir is None:
            path = Path(out) if out and not out.startswith("gst:") else Path("segmented")
            self.out_dir = path.with_name(f"{path.stem}-dicom")
        self._check_out_dir(source)
        return self

    def _check_out_dir(self, source: Path) -> None:
        out_dir = Path(self.out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--dicom-out {out_dir} is an existing file, not a folder",
                              hint="pass a new or empty folder for the DICOM results")
        series = source if source.is_dir() else source.parent
        if source.is_dir() and _inside(out_dir, series):
            raise ConfigError(f"--dicom-out {out_dir} is inside the source series folder {series}: the results would "
                              "join the series read next time", hint="pass a folder outside the source's")

    def sink(self, cap: Any, entry: Any, mode: str = "contour") -> DicomResults:
        """The DicomResults collecting this run's chosen masks (and overlay), for a pipeline."""
        numbers = frame_numbers_from_text(self.seg_frames, cap.frame_count) if self.seg_frames else []
        return DicomResults(cap, numbers, Algorithm.from_entry(entry), self.overlay_sc, mode)

    def finish(self, results: DicomResults) -> dict[str, Any]:
        """Write the results (all or none), then send them; returns what the report says."""
        paths = write_datasets(results.datasets(), self.out_dir)
        return {"dicom_out": str(self.out_dir), "files": [p.name for p in paths], "notes": results.notes,
                **deliver(paths, self.send, self.stow)}


def deliver(paths: list[Path], nodes: list[DicomNode], stow_urls: list[str]) -> dict[str, Any]:
    """C-STORE to each node and STOW-RS to each URL; returns {"sent": [...]} naming where each went
    and how many instances each said it stored."""
    sent = []
    for node in nodes:
        sent.append({"to": str(node), "protocol": "C-STORE", "instances": len(c_store(paths, node))})
    for url in stow_urls:
        sent.append({"to": url, "protocol": "STOW-RS", "instances": len(stow_rs(paths, url))})
    return {"sent": sent}


def segment_instance(path: Path, segmenter: Any, out_dir: Path, job: DicomJob, mode: str = "contour",
                     stop: threading.Event | None = None) -> dict[str, Any]:
    """Segment one DICOM file (a received instance) through the frame runtime and write its results
    in `out_dir` (created; must be new): the job's SEGs and overlay, and `frames.jsonl` with every
    frame's mask-stage record (confidence, flags, area in px and mm^2). Returns the report line.
    `stop` (set by a time budget) ends the run early; nothing is written then."""
    from llm4seg.runtime.doors.video.pipeline import VideoPipeline

    job = DicomJob(job.seg_frames, out_dir, job.overlay_sc, list(job.send), list(job.stow)).check(path)
    pipeline = VideoPipeline(segmenter, str(path), sink=lambda frame: None, stop=stop)
    results = pipeline.sink = job.sink(pipeline.cap, segmenter.entry, mode)
    pipeline.run()
    if stop is not None and stop.is_set():
        return {"instance": path.stem, "stopped": True}
    report = job.finish(results)
    write_jsonl_atomic(out_dir / FRAME_LOG, pipeline.report.frames)
    return {"instance": path.stem, **report, "files": report["files"] + [FRAME_LOG],
            "quality": pipeline.report.summary().get("quality")}


__all__ = ["DicomJob", "FRAME_LOG", "deliver", "segment_instance"]
