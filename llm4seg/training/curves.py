"""Training curves (loss, validation Dice/IoU per epoch) as one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm4seg._optional import require
from llm4seg.fileio import atomic_path


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    matplotlib = require("matplotlib", "training curves")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    ticker = require("matplotlib.ticker")
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # epochs are whole numbers
    epochs = [r["epoch"] for r in rows]
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("0.5*BCE + Dice")
    val = [r for r in rows if r.get("val_dice") is not None]
    for key in ("val_dice", "val_iou"):
        ax_val.plot([r["epoch"] for r in val], [r[key] for r in val], marker=".", label=key)
    ax_val.set_xlabel("epoch")
    ax_val.set_ylim(0, 1)
    ax_val.legend()
    ax_val.set_title("validation (mean per image)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
