"""Training curves (loss, validation Dice/IoU per epoch) as one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm4seg._optional import require
from llm4seg.fileio import atomic_path


def curves_figure(rows: list[dict[str, Any]]):
    """The figure: loss per epoch, validation Dice/IoU per epoch (markers, so one epoch shows too)."""
    matplotlib = require("matplotlib", "training curves")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    ticker = require("matplotlib.ticker")
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in rows]
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], marker=".", label="train loss")
    ax_loss.set_title("0.5*BCE + Dice")
    val = [r for r in rows if r.get("val_dice") is not None]
    for key in ("val_dice", "val_iou"):
        ax_val.plot([r["epoch"] for r in val], [r[key] for r in val], marker=".", label=key)
    ax_val.set_ylim(0, 1)
    # Outside the axes, to the right: inside, the legend hid the last points (issue 45, item 6).
    ax_val.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax_val.set_title("validation (mean per image)")
    last = max(epochs, default=1)
    for ax in (ax_loss, ax_val):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs
        ax.set_xlim(0.5, last + 0.5)  # one epoch: a point at 1, not an axis from 0.945 to 1.05
    fig.tight_layout()  # makes room for the legend outside the axes
    return fig


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """curves.png (written atomically) from the run's metrics rows."""
    plt = require("matplotlib.pyplot")
    fig = curves_figure(rows)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
