"""DICOM results of a run: `DicomResults` (a pipeline sink keeping the chosen frames' masks and,
when asked, the overlaid loop) and `write_datasets` (all or none: every file goes to a temporary
name first and is renamed only when all are written; on any failure none of them stays)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from llm4seg.errors import ConfigError
from llm4seg.runtime.core.overlay import overlay
from llm4seg.runtime.doors.dicom.capture import OverlayCapture
from llm4seg.runtime.doors.dicom.seg import Algorithm, seg_for_frame


def write_datasets(datasets: dict[str, Any], out_dir: Path | str) -> list[Path]:
    """Write each dataset as `out_dir/<name>` (DICOM Part 10), all or none.

    Returns:
        the paths written.

    Raises:
        ConfigError naming the file when one cannot be written (none of them is left behind).
    """
    out_dir = Path(out_dir)
    for stale in out_dir.glob(".*.dcm.tmp*") if out_dir.is_dir() else ():  # a killed earlier write's leftovers
        stale.unlink(missing_ok=True)
    taken = [name for name in datasets if (out_dir / name).exists()]
    if taken:
        raise ConfigError(f"{out_dir} already holds {', '.join(taken[:5])}", hint="pass an empty --dicom-out folder "
                          "(results of an earlier run are never overwritten)")
    out_dir.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[Path, Path]] = []
    renamed: list[Path] = []
    try:
        for name, ds in datasets.items():
            path = out_dir / name
            temps.append((path.with_name(f".{name}.tmp{os.getpid()}"), path))
            ds.save_as(temps[-1][0], enforce_file_format=True)
        for tmp, path in temps:
            os.replace(tmp, path)
            renamed.append(path)
    except OSError as exc:
        for path in renamed:  # all or none
            path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write DICOM results to {out_dir}: {exc}",
                          hint="pass a writable --dicom-out folder with room for the files") from None
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
    return renamed


class DicomResults:
    """A pipeline sink (chain it before the video sink with `tee`) that keeps the masks of the
    chosen frames and, when asked, the overlaid frames; `datasets()` makes the SEGs and overlay.

    Args:
        source: the run's DicomSource (its header is what the results reference).
        frame_numbers: 1-based frames that get a SEG.
        overlay_sc: also make the whole loop's overlay as a Secondary Capture.
    """

    def __init__(self, source: Any, frame_numbers: list[int], algorithm: Algorithm, overlay_sc: bool = False,
                 mode: str = "contour") -> None:
        self.source, self.algorithm, self.mode = source, algorithm, mode
        self.wanted = set(frame_numbers)
        self.masks: dict[int, np.ndarray] = {}
        self.notes: list[str] = []
        times = getattr(source, "times_s", None)
        frame_time_ms = 1000.0 * (times[1] - times[0]) if times and len(times) > 1 else None
        self.capture = OverlayCapture(source.instances, frame_time_ms) if overlay_sc else None

    def __call__(self, frame: Any) -> None:
        number = frame.index + 1
        if number in self.wanted and frame.mask is not None:
            self.masks[number] = np.array(frame.mask, copy=True)
        if self.capture is not None:
            self.capture.add(overlay(frame.image, frame.mask, self.mode, unsure=getattr(frame, "unsure", False)))

    def tee(self, sink: Any) -> Any:
        """A sink that feeds this and then `sink` (its close and attributes kept)."""
        return _Tee(self, sink)

    def datasets(self) -> dict[str, Any]:
        """{file name: dataset}: one SEG per chosen frame, and overlay.dcm when asked.

        Raises:
            ConfigError when a chosen frame never came (no SEG is then made at all).
        """
        from pydicom.uid import generate_uid

        missing = sorted(self.wanted - set(self.masks))
        if missing:
            raise ConfigError(f"frames {missing[:10]} of {self.source.path.name} were never segmented (the run "
                              f"ended after {len(self.masks)} of the chosen frames); no SEG was written",
                              hint="see the run's events (a decode error or an interrupt), or choose other frames")
        series = generate_uid()
        empty = [n for n in sorted(self.masks) if not self.masks[n].any()]
        if empty:  # said once, in our words (highdicom logs a warning per SEG)
            self.notes.append(f"{len(empty)} chosen frame(s) had an empty mask (frames {empty[:10]}"
                              f"{', ...' if len(empty) > 10 else ''}): their SEGs hold an empty segment")
        out = {f"seg_frame{n:04d}.dcm": seg_for_frame(*self.source.instance_of(n), self.masks[n], self.algorithm,
                                                      series, i + 1) for i, n in enumerate(sorted(self.masks))}
        if self.capture is not None:
            out["overlay.dcm"] = self.capture.dataset(self.algorithm, generate_uid())
        return out


class _Tee:
    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second

    def __call__(self, frame: Any) -> None:
        self.first(frame)
        self.second(frame)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.second, name)


__all__ = ["DicomResults", "write_datasets"]
