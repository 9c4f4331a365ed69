"""Rich progress on stderr for training: one bar for epochs, one for the steps of the epoch."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from llm4seg.cli.render import stderr


def resume_line(trainer: Any, out: Any) -> str:
    """What a resumed run says first: where it goes on from."""
    epoch, step = trainer.resume_point()
    return (f"resuming {out} at epoch {epoch + 1}/{trainer.cfg.epochs}, step {step}/{trainer.steps_per_epoch} of that "
            f"epoch ({trainer.state['step']} optimizer steps done)")


class TrainProgress:
    """Rich progress bars for `llm4seg train` on a wide terminal: epochs and the current epoch's steps."""

    def __init__(self, progress: Progress, trainer: Any) -> None:
        self.progress = progress
        start, steps_done = trainer.resume_point()  # a resumed run's bars start where it stopped, not at 0
        self.epochs = progress.add_task("epochs", total=trainer.cfg.epochs, completed=start, info="")
        self.steps = progress.add_task(f"epoch {start + 1}", total=trainer.steps_per_epoch, completed=steps_done, info="")
        self.epoch, self.total_epochs = start, trainer.cfg.epochs

    def on_step(self) -> None:
        """Advance the step bar by one optimizer step."""
        self.progress.advance(self.steps)

    def on_epoch(self, row: dict[str, Any]) -> None:
        """Show an epoch's row (loss, speed, validation Dice/IoU) and start the next epoch's bar."""
        self.epoch = row["epoch"]
        info = f"loss {row['train_loss']:.3f}  {row['it_per_s']:.2f} it/s"
        if "val_dice" in row:
            info += f"  val Dice {row['val_dice']:.3f} IoU {row['val_iou']:.3f}"
        self.progress.update(self.epochs, advance=1, info=info)
        if self.epoch < self.total_epochs:
            self.progress.reset(self.steps, description=f"epoch {self.epoch + 1}")


class LineProgress:
    """For pipes, logs and narrow terminals: one plain line per epoch, nothing redrawn or cut, and
    within a long epoch a step line every `every_s` seconds (a BUSI epoch can take many minutes on
    a loaded CPU: a log must show the run is alive)."""

    def __init__(self, trainer: Any, every_s: float = 30.0, clock: Any = time.monotonic) -> None:
        self.total, self.steps_per_epoch = trainer.cfg.epochs, trainer.steps_per_epoch
        epoch, self.step = trainer.resume_point()  # a resumed run counts on from where it stopped
        self.epoch, self.every_s, self.clock, self.first_step = epoch + 1, every_s, clock, self.step
        self.started = self.last = clock()

    def on_step(self) -> None:
        """Count a step; print a progress line at most every `every_s` seconds."""
        self.step += 1
        now = self.clock()
        if now - self.last >= self.every_s and self.step < self.steps_per_epoch:
            self.last = now
            rate = (self.step - self.first_step) / max(now - self.started, 1e-9)
            stderr.print(f"epoch {self.epoch}/{self.total}  step {self.step}/{self.steps_per_epoch}  {rate:.2f} it/s",
                         soft_wrap=True, markup=False, highlight=False)

    def on_epoch(self, row: dict[str, Any]) -> None:
        """Print the finished epoch's line (loss, speed, validation Dice/IoU)."""
        self.epoch, self.step, self.first_step = row["epoch"] + 1, 0, 0
        self.started = self.last = self.clock()
        line = f"epoch {row['epoch']}/{self.total}  loss {row['train_loss']:.3f}  {row['it_per_s']:.2f} it/s"
        if "val_dice" in row:
            line += f"  val Dice {row['val_dice']:.3f} IoU {row['val_iou']:.3f}"
        stderr.print(line, soft_wrap=True, markup=False, highlight=False)


@contextlib.contextmanager
def train_progress(trainer: Any) -> Iterator[Any]:
    """Progress for a trainer on stderr: bars on a wide terminal, plain lines elsewhere (logs, CI)."""
    if not stderr.is_terminal or stderr.width < 100:
        yield LineProgress(trainer)
        return
    columns = (TextColumn("{task.description:>10}"), BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=stderr, transient=False) as progress:
        yield TrainProgress(progress, trainer)
