"""One cell of a compare matrix: what the matrix is (`Matrix`), and how one (variant, split, seed)
is trained, or resumed from its run folder, and scored on its own validation images. Both the
matrix runner (`compare`) and the executors that run cells elsewhere (`executors`: Ray, Slurm,
child processes) call `run_cell`; neither imports the other for it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm4seg.fileio import write_json_atomic
from llm4seg.paired import cell_name


@dataclass
class Matrix:
    """What to run: every variant on every split and seed, with one set of training settings."""

    variants: list[str]
    splits: list[str | None]
    seeds: list[int]
    data: str | None = None
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields shared by every cell
    llm: str | None = None

    def cells(self) -> list[tuple[str, str | None, int]]:
        """Every (variant, split, seed) run of the matrix, in run order."""
        return [(v, s, seed) for s in self.splits for seed in self.seeds for v in self.variants]


def _overrides(matrix: Matrix, variant: str) -> dict[str, Any]:
    return {"llm": matrix.llm} if matrix.llm and variant.startswith("llm4seg") else {}


def run_cell(matrix: Matrix, out: Path, cell: tuple[str, str | None, int]) -> dict[str, Any]:
    """Train (or resume) one cell in this process and score its best checkpoint on its val split."""
    from llm4seg.training.config import TrainConfig
    from llm4seg.training.run import train

    variant, split, seed = cell
    run = out / "runs" / cell_name(*cell)
    scored = run / "scores.json"
    if scored.is_file():
        return json.loads(scored.read_text())
    resume = (run / "config.json").is_file()
    cfg = TrainConfig(out=str(run), model=variant, model_overrides=_overrides(matrix, variant), data=matrix.data,
                      split=split, seed=seed, **matrix.train)
    train(cfg, resume=resume)
    return score_cell(run, cell)


def score_cell(run: Path, cell: tuple[str, str | None, int]) -> dict[str, Any]:
    """Per-image metrics of the run's best checkpoint on the run's own validation images."""
    import torch

    from llm4seg.checkpoint import load_checkpoint
    from llm4seg.data.datasets import train_val_datasets
    from llm4seg.evaluate import evaluate_model
    from llm4seg.metrics import summarise
    from llm4seg.training.config import TrainConfig

    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text())["train"])
    _, val = train_val_datasets(cfg.data, cfg.split, cfg.val_split, cfg.image_size, seed=cfg.seed,
                                skip_bad=cfg.skip_bad, synthetic_count=cfg.synthetic_count)
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    model = load_checkpoint(run / "checkpoints" / "best", device=device)
    rows, _ = evaluate_model(model, val, device)
    variant, split, seed = cell
    scores = {"variant": variant, "split": split or "all", "seed": seed, "val": val.name, "n": len(rows),
              "metrics": {k: v["mean"] for k, v in summarise(rows).items()}, "per_image": rows}
    write_json_atomic(run / "scores.json", scores)
    return scores


__all__ = ["Matrix", "run_cell", "score_cell"]
