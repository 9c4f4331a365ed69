"""`llm4seg video` as a Python API: one source through the frame runtime to an overlaid video, a
frame log and (for DICOM sources) DICOM results, everything checked before the first frame.

    report = VideoJob("cine.dcm", "ART/model.onnx", "seg.mp4", smooth="ema",
                      dicom=DicomJob(seg_frames="1,15")).run()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm4seg.fileio import write_jsonl_atomic
from llm4seg.smoothing import smoother_from_text


@dataclass
class VideoJob:
    """One video run (the options of `llm4seg video`).

    Args:
        source: a file, camera index, stream URL, gst:<pipeline>, DICOM file or series folder.
        engine: an artifact path or a served model's URL.
        out: the output video (or 'gst:appsrc ! ...').
        reader, writer: 'auto', 'pyav' or 'opencv'.
        overlay_mode: 'contour' or 'fill'.
        batch: frames per inference call.
        smooth: none, ema[:ALPHA], median[:WINDOW] or flow[:ALPHA] (motion-compensated).
        frame_log: a file for one JSON line per frame (the mask stage's record), or None.
        dicom: a DicomJob (SEGs, overlay, sending) for DICOM sources, or None.
        backend_options: passed to the backend (compile=, threads=, ...).
    """

    source: str
    engine: str | Path
    out: str = "segmented.mp4"
    reader: str = "auto"
    writer: str = "auto"
    overlay_mode: str = "contour"
    batch: int = 1
    smooth: str | None = None
    frame_log: Path | None = None
    dicom: Any = None
    backend_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse, before any frame, what cannot work (outputs over the input, unwritable files,
        a smoothing that does not parse, DICOM results for a non-DICOM source)."""
        from llm4seg.runtime.doors.video.sinks import check_writable, refuse_output_over_input

        refuse_output_over_input(self.source, self.out)
        smoother_from_text(self.smooth)
        if self.dicom is not None:
            self.dicom.check(self.source, self.out)
        if self.frame_log is not None:
            refuse_output_over_input(self.source, self.frame_log)
            check_writable(self.frame_log)

    def run(self) -> dict[str, Any]:
        """Run to the end of the source (or Ctrl-C); returns the report (`interrupted` when stopped)."""
        from llm4seg.runtime.core.segmenter import Segmenter
        from llm4seg.runtime.doors.video.pipeline import VideoPipeline
        from llm4seg.runtime.doors.video.sinks import open_sink

        self.check()
        dicom = self.dicom if self.dicom is not None and self.dicom.wanted else None
        with Segmenter(self.engine, **self.backend_options) as seg:
            pipeline = VideoPipeline(seg, self.source, sink=lambda f: None, batch=self.batch, reader=self.reader,
                                     smooth=smoother_from_text(self.smooth))
            pipeline.sink = video_sink = open_sink(self.out, pipeline.fps, self.overlay_mode, self.writer)
            results = dicom.sink(pipeline.cap, seg.entry, self.overlay_mode) if dicom else None
            if results is not None:
                pipeline.sink = results.tee(video_sink)
            try:
                report = pipeline.run().summary()
            except Exception:
                self._write_frame_log(pipeline)  # what was processed before the failure is kept
                raise
        if results is not None and not pipeline.interrupted:
            report["dicom"] = dicom.finish(results)
        return self._finish(report, pipeline, video_sink)

    def _finish(self, report: dict[str, Any], pipeline: Any, sink: Any) -> dict[str, Any]:
        report.update(out=self.out, reader=pipeline.cap.reader, codec=sink.codec, container=sink.container,
                      interrupted=pipeline.interrupted)
        if self._write_frame_log(pipeline):
            report["frame_log"] = str(self.frame_log)
        if report["codec"] == "mp4v" and self.writer == "auto":  # issue 34: say how to get H.264
            report["events"].append("PyAV is not installed, so OpenCV wrote MPEG-4 Part 2 (mp4v), which browsers and "
                                    "most players do not show: pip install 'llm4seg[video]' writes H.264")
        return report

    def _write_frame_log(self, pipeline: Any) -> bool:
        """Write the frame log (one record per frame processed), when one was asked for."""
        if self.frame_log is None:
            return False
        write_jsonl_atomic(self.frame_log, pipeline.report.frames)
        return True


__all__ = ["VideoJob"]
