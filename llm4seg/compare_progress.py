"""Per-cell progress of a running comparison: one line per finished epoch of any cell.

A cell is an ordinary run folder whose `metrics.jsonl` gains one row per epoch (written
atomically), whether the cell trains in this process or in its own (`--parallel`). A watcher
thread reads those files every few seconds and reports each new row: cell, epoch of epochs,
validation IoU (in %), seconds per epoch and the cell's estimated time left; and when a cell
starts (its run folder appears), at once. Plain lines, so pipes and
log files get them as terminals do (compare printed nothing until a cell finished: hours at the
paper's 300 epochs).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

from llm4seg.paired import cell_name


def _rows(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):  # not written yet, or mid-replace on a file system without atomic rename
        return []


def epoch_line(cell: str, row: dict, epochs: int, seconds_per_epoch: float) -> str:
    """'llm4seg-val1-s0: epoch 12/300, val IoU 61.20 %, 41 s/epoch, about 3 h 17 min left' (IoU in %, as
    every other line and report.md print it)."""
    iou = f", val IoU {100 * row['val_iou']:.2f} %" if row.get("val_iou") is not None else ""
    left_s = max(0, epochs - int(row["epoch"])) * seconds_per_epoch
    hours, minutes = divmod(int(round(left_s / 60)), 60)
    left = f"{hours} h {minutes} min" if hours else f"{minutes} min" if minutes else f"{left_s:.0f} s"
    return f"{cell}: epoch {row['epoch']}/{epochs}{iou}, {seconds_per_epoch:.0f} s/epoch, about {left} left"


class CellWatcher:
    """Reports new epoch rows of every cell of a comparison until stopped (a context manager).

    Args:
        out: the comparison folder (cells under out/runs/).
        cells: the matrix's (variant, split, seed) cells.
        epochs: epochs per cell.
        report: where lines go (e.g. stderr).
        every_s: how often the files are read.
    """

    def __init__(self, out: Path, cells: list[tuple[str, str | None, int]], epochs: int,
                 report: Callable[[str], None], every_s: float = 5.0) -> None:
        self.names = [cell_name(*c) for c in cells]
        self.out, self.epochs, self.report, self.every_s = Path(out), epochs, report, every_s
        self.seen = {n: len(_rows(self._metrics(n))) for n in self.names}  # rows of earlier sessions: not news
        self.started = {n for n in self.names if self.seen[n]}  # cells begun in an earlier session
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llm4seg-compare-progress", daemon=True)

    def _metrics(self, name: str) -> Path:
        return self.out / "runs" / name / "metrics.jsonl"

    def poll(self) -> None:
        """Report every row written since the last poll."""
        for name in self.names:
            if name not in self.started and (self.out / "runs" / name).is_dir():
                self.started.add(name)  # said at once: a first epoch can take many minutes
                self.report(f"{name}: started ({self.epochs} epochs)")
            rows = _rows(self._metrics(name))
            for row in rows[self.seen[name]:]:
                timed = [r["epoch_s"] for r in rows if r.get("epoch_s")]
                self.report(epoch_line(name, row, self.epochs, sum(timed) / len(timed) if timed else 0.0))
            self.seen[name] = max(self.seen[name], len(rows))

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.poll()

    def __enter__(self) -> "CellWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s + 1)
        self.poll()  # the last rows before the cells finished
