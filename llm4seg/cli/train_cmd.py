"""`llm4seg train`: the paper's protocol on a dataset folder or the synthetic default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from llm4seg.cli.options import (AttentionOpt, DataOpt, DeviceOpt, JsonOpt, LayerOpt, LlmOpt,
                                 PositionsOpt, SplitOpt)
from llm4seg.cli.render import print_json, stderr, stdout

EXAMPLE = """\b
Examples:
  llm4seg train --epochs 8 --image-size 96 --synthetic-count 160   # synthetic demo
  llm4seg train --data DATA --split train1 --out runs/busi1        # BUSI, paper protocol
  llm4seg train --resume runs/busi1                                # continue a killed run
"""

# Settings a resumed run takes from its folder; giving one that differs is refused, not ignored.
RESUMABLE = ("model", "data", "split", "val_split", "image_size", "epochs", "batch_size", "lr", "val_every", "seed",
             "synthetic_count", "paper_double_scaling", "skip_bad", "checkpoint_every_s", "amp", "compile",
             "step_mode")


def train(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model name (see `llm4seg models`) [default: llm4seg].", show_default=False)] = None,
    llm: LlmOpt = None,
    layer: LayerOpt = None,
    attention: AttentionOpt = None,
    positions: PositionsOpt = None,
    size: Annotated[Optional[str], typer.Option("--size", help="CNN size: s, base (default) or l.")] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="LLM layer weights: pretrained (default) or random.")] = None,
    trainable: Annotated[Optional[bool], typer.Option("--trainable/--frozen", help="Train the LLM layer (\"(T)\") or keep it frozen (default).", show_default=False)] = None,
    in_channels: Annotated[Optional[int], typer.Option("--in-channels", help="Input channels (default 3).")] = None,
    data: DataOpt = None,
    split: SplitOpt = None,
    val_split: Annotated[Optional[str], typer.Option("--val-split", help="Validation split (default: trainK -> valK, else a seeded 20%).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (new or empty) [default: runs/llm4seg].", show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run in this folder (all settings come from it).")] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Square training size in pixels, a multiple of 16 [default: 256].", show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs [default: 300, the paper's].", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Global batch size [default: 8].", show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="SGD learning rate, poly-decayed per step [default: 0.01].", show_default=False)] = None,
    val_every: Annotated[Optional[int], typer.Option("--val-every", help="Validate every N epochs (and at the end) [default: 1].", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the model's initialisation and of every epoch's shuffling and augmentation [default: 0].", show_default=False)] = None,
    device: DeviceOpt = "auto",
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA [default: on].", show_default=False)] = None,
    step_mode: Annotated[Optional[str], typer.Option("--step-mode", help="eager, or graph: forward, backward and SGD captured as one CUDA graph (GPU; eager on CPU) [default: eager].", show_default=False)] = None,
    compile_model: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the model [default: off].", show_default=False)] = None,
    synthetic_count: Annotated[Optional[int], typer.Option("--synthetic-count", help="Images in the synthetic set [default: 200].", show_default=False)] = None,
    paper_double_scaling: Annotated[Optional[bool], typer.Option("--paper-double-scaling", help="Divide normalised images by 255 again, as the authors' code does.", show_default=False)] = None,
    skip_bad: Annotated[Optional[bool], typer.Option("--skip-bad", help="Leave out bad image/mask pairs (they are listed) instead of failing.", show_default=False)] = None,
    checkpoint_every_s: Annotated[Optional[float], typer.Option("--checkpoint-every-s", help="Save the run's state at most this often (and at the end) [default: 60].", show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train a model; writes checkpoints (best by val IoU, last), metrics, curves and a log."""
    from llm4seg.training.config import TrainConfig

    from llm4seg.errors import ConfigError

    if resume is not None and out is not None and Path(out).resolve() != Path(resume).resolve():
        raise ConfigError(f"--resume {resume} continues that run in its own folder, but --out {out} was given",
                          hint=f"drop --out to resume, or start a new run in {out} without --resume")
    given = {k: v for k, v in dict(model=model, data=data, split=split, val_split=val_split,
                                    image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr, val_every=val_every,
                                    seed=seed, synthetic_count=synthetic_count, paper_double_scaling=paper_double_scaling,
                                    skip_bad=skip_bad, checkpoint_every_s=checkpoint_every_s, amp=amp,
                                    compile=compile_model, step_mode=step_mode).items() if v is not None}
    overrides = {k: v for k, v in dict(llm=llm, layer=layer, attention=attention, positions=positions, size=size,
                                       init=init, trainable=trainable, in_channels=in_channels).items() if v is not None}
    cfg = TrainConfig(out=str(resume or out or Path("runs/llm4seg")), model=model or "llm4seg",
                      model_overrides=overrides, device=device,
                      **{k: v for k, v in given.items() if k != "model"})
    if resume is not None:
        _refuse_changed_settings(cfg, given, overrides)
    _run(cfg, resume is not None, json_out)


def _refuse_changed_settings(cfg: Any, given: dict[str, Any], overrides: dict[str, Any]) -> None:
    from llm4seg.errors import ConfigError
    from llm4seg.training.run_folder import saved_config

    if not (Path(cfg.out) / "config.json").is_file():
        return  # prepare_run says what is wrong with the folder
    saved = saved_config(cfg)
    changed = [f"--{k.replace('_', '-')} {v!r} (the run has {getattr(saved, k)!r})"
               for k, v in given.items() if k in RESUMABLE and getattr(saved, k) != v]
    changed += [f"--{k.replace('_', '-')} {v!r} (the run has {saved.model_overrides.get(k)!r})"
                for k, v in overrides.items() if saved.model_overrides.get(k) != v]
    if changed:
        raise ConfigError(f"--resume continues {cfg.out} with its own settings, but {'; '.join(changed)} was given",
                          hint="drop those options to resume, or start a new run with another --out")


def _run(cfg: Any, resume: bool, json_out: bool) -> None:
    from llm4seg.cli.progress import resume_line, train_progress
    from llm4seg.training.run import train as run_training

    def announced(trainer: Any) -> Any:  # named once the run folder is really in use (a refused run writes none)
        stderr.print(resume_line(trainer, cfg.out) if resume else f"run folder: {cfg.out}", soft_wrap=True)
        return train_progress(trainer)

    try:
        summary = run_training(cfg, resume=resume, progress_factory=None if json_out else announced)
    except KeyboardInterrupt:
        stderr.print(f"interrupted (Ctrl-C). {_kept(Path(cfg.out))}", soft_wrap=True)
        raise typer.Exit(130) from None
    if summary is None:  # not the main process of a torchrun job: rank 0 reports
        return
    if json_out:
        print_json(summary)
        return
    _report(summary, cfg)


def _kept(run: Path) -> str:
    try:
        pointer = json.loads((run / "state" / "CURRENT").read_text())
        kept = f"Kept the state of epoch {pointer['epoch']} (step {pointer['step']})"
        if pointer.get("epoch_step"):  # a timed save inside an epoch
            kept = (f"Kept the state after step {pointer['step']} ({pointer['epoch_step']} steps into epoch "
                    f"{pointer['epoch'] + 1})")
    except (OSError, ValueError, KeyError):
        kept = "No epoch was saved yet" if (run / "config.json").is_file() else "Nothing was written"
    if not (run / "config.json").is_file():
        return f"{kept}; start again with the same command."
    return f"{kept}; continue with: llm4seg train --resume {run}"


def _report(summary: dict[str, Any], cfg: Any) -> None:
    last = summary["last"]
    run = summary["run_dir"]
    stdout.print(f"masks: {summary['masks']}", soft_wrap=True)
    if summary.get("skipped"):
        stdout.print(f"left out {len(summary['skipped'])} bad pair(s) (--skip-bad):")
        for stem, reason in summary["skipped"].items():
            stdout.print(f"  {stem}: {reason}")
    stdout.print(f"best val IoU {summary['best_val_iou']:.4f} at epoch {summary['best_epoch']}; "
                 f"last epoch val Dice {last.get('val_dice', float('nan')):.4f}, IoU {last.get('val_iou', float('nan')):.4f}")
    stdout.print(f"wrote {run}/: checkpoints/best, checkpoints/last, metrics.jsonl, curves.png, train.log",
                 soft_wrap=True)
    from llm4seg.training.run_folder import saved_config

    saved = saved_config(cfg)  # the run's own settings: a resumed run's command line names no --data
    data = (f"--data {saved.data} --split {summary.get('val_split') or 'VAL'}" if saved.data
            else f"--synthetic-count {saved.synthetic_count}")
    stdout.print(f"next: {_command_name()} eval {run}/checkpoints/best {data}", soft_wrap=True)


def _command_name() -> str:
    """`llm4seg` where it is on PATH, else the path of the installed script (`make demo` installs it
    into .venv/bin, which a fresh shell does not have on PATH): the printed next step runs as printed."""
    import shutil
    import sys

    found = shutil.which("llm4seg")
    beside = Path(sys.executable).parent / "llm4seg"
    if found and Path(found).resolve() == beside.resolve():
        return "llm4seg"
    if not beside.is_file():
        return "llm4seg"
    try:
        return str(beside.relative_to(Path.cwd()))  # .venv/bin/llm4seg after `make demo`
    except ValueError:
        return str(beside)


train.__doc__ = f"{train.__doc__}\n\n{EXAMPLE}"
