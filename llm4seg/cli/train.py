"""`llm4seg train`: the paper's protocol on a dataset folder or the synthetic default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.options import (AttentionOpt, DataOpt, DeviceOpt, JsonOpt, LayerOpt, LlmOpt, ModelOpt,
                                 PositionsOpt, SkipBadOpt, SplitOpt)
from llm4seg.cli.render import print_json, stdout


def train(
    model: ModelOpt = "llm4seg",
    llm: LlmOpt = None,
    layer: LayerOpt = None,
    attention: AttentionOpt = None,
    positions: PositionsOpt = None,
    data: DataOpt = None,
    split: SplitOpt = None,
    val_split: Annotated[Optional[str], typer.Option("--val-split", help="Validation split (default: trainK -> valK, else a seeded 20%).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/llm4seg"),
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this folder (all settings come from it).")] = None,
    image_size: Annotated[int, typer.Option("--image-size")] = 256,
    epochs: Annotated[int, typer.Option("--epochs")] = 300,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 8,
    lr: Annotated[float, typer.Option("--lr")] = 0.01,
    val_every: Annotated[int, typer.Option("--val-every", help="Validate every N epochs (and at the end).")] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "auto",
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA.")] = True,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    synthetic_count: Annotated[int, typer.Option("--synthetic-count", help="Images in the synthetic set.")] = 200,
    paper_double_scaling: Annotated[bool, typer.Option("--paper-double-scaling", help="Divide normalised images by 255 again, as the authors' code does.")] = False,
    skip_bad: SkipBadOpt = False,
    checkpoint_every_s: Annotated[float, typer.Option("--checkpoint-every-s", help="Write last/best/resume state at most this often (and at the end).")] = 60.0,
    json_out: JsonOpt = False,
) -> None:
    """Train a model; writes checkpoints (best by val IoU, last), metrics, curves and a log."""
    from llm4seg.cli.progress import train_progress
    from llm4seg.training.config import TrainConfig
    from llm4seg.training.run import train as run_training

    overrides = {k: v for k, v in dict(llm=llm, layer=layer, attention=attention, positions=positions).items() if v is not None}
    cfg = TrainConfig(
        out=str(resume or out), model=model, model_overrides=overrides, data=data, split=split, val_split=val_split,
        synthetic_count=synthetic_count, image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
        val_every=val_every, seed=seed, device=device, amp=amp, compile=compile_model,
        paper_double_scaling=paper_double_scaling, skip_bad=skip_bad,
        checkpoint_every_s=checkpoint_every_s,
    )
    summary = run_training(cfg, resume=resume is not None, progress_factory=None if json_out else train_progress)
    if json_out:
        print_json(summary)
        return
    last = summary["last"]
    stdout.print(f"run folder: {summary['run_dir']}")
    stdout.print(f"best val IoU {summary['best_val_iou']:.4f} at epoch {summary['best_epoch']}; "
                 f"last epoch val Dice {last.get('val_dice', float('nan')):.4f}, IoU {last.get('val_iou', float('nan')):.4f}")
