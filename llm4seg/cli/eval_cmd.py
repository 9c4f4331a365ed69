"""`llm4seg eval`: per-image metrics of a checkpoint on a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.options import DataOpt, DeviceOpt, JsonOpt, SkipBadOpt, SplitOpt
from llm4seg.cli.render import print_json, print_table, stderr, stdout


def evaluate(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="Checkpoint folder (config.json + model.safetensors).")],
    data: DataOpt = None,
    split: SplitOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (default: RUN/eval-<best|last>-<dataset>-<split> for a run's checkpoint, else CHECKPOINT/eval-<dataset>-<split>).")] = None,
    device: DeviceOpt = "auto",
    skip_bad: SkipBadOpt = False,
    synthetic_count: Annotated[int, typer.Option("--synthetic-count", help="Images of the synthetic set when --data is omitted (drawn with another seed than training's).")] = 200,
    json_out: JsonOpt = False,
) -> None:
    """Score CHECKPOINT at threshold 0.5: IoU, Dice, sensitivity, precision, F1, specificity, accuracy, HD95.

    \b
    Example:
      llm4seg eval runs/busi1/checkpoints/best --data ../shared/datasets/busi --split val1
    """
    from llm4seg.checkpoint import load_checkpoint
    from llm4seg.data.datasets import held_out_split, load_dataset
    from llm4seg.evaluate import add_hd95_mm, evaluate_model, write_report
    from llm4seg.training.loop import pick_device

    dev = pick_device(device)
    model = load_checkpoint(checkpoint, device=dev)
    chosen = held_out_split(data, split)
    if data not in (None, "synthetic") and not split:
        stderr.print(f"scoring split {chosen} of {data} (its held-out split; --split NAME scores another)" if chosen
                     else f"scoring every image of {data} (it has no splits/val.txt or val1.txt)", soft_wrap=True)
    # The synthetic default evaluates on images the training split never drew (another seed).
    dataset = load_dataset(data, chosen, model.config.image_size, skip_bad, synthetic_count, seed=10_000)
    rows, probs = evaluate_model(model, dataset, dev)
    add_hd95_mm(rows, probs, dataset, model.config.threshold)  # DICOM images with a pixel size
    # Dataset name and split, so the same split name on two datasets cannot collide.
    tag = dataset.name.replace(":", "-").replace("/", "_")
    ckpt = Path(checkpoint)
    # Inside a run, reports go to the run folder: checkpoints/ are replaced whole at every save.
    in_run = ckpt.parent.name == "checkpoints" and (ckpt.parent.parent / "config.json").is_file()
    report_dir = out or (ckpt.parent.parent / f"eval-{ckpt.name}-{tag}" if in_run else ckpt / f"eval-{tag}")
    summary = write_report(report_dir, rows, probs, dataset, model.config.threshold)
    m = summary["metrics"]
    if json_out:
        print_json({"n": summary["n"], **{k: v["mean"] for k, v in m.items()},
                    "sd": {k: v["sd"] for k, v in m.items()}, "report_dir": str(report_dir),
                    **({"hd95_mm_n": m["hd95_mm"]["n"]} if "hd95_mm" in m else {}),
                    "skipped": dataset.skipped,
                    "units": "fractions 0-1 (the table shows %); hd95 in pixels at the model's resolution; "
                             "hd95_mm in mm on each DICOM image's own grid"})
        return
    unit = {"hd95": 1, "hd95_mm": 1}
    rows = [[name if name != "hd95_mm" else f"hd95_mm (n={v['n']})", f"{v['mean'] * unit.get(name, 100):.2f}",
             f"{v['sd'] * unit.get(name, 100):.2f}"] for name, v in m.items()]
    units = "HD95 in pixels at the model's size" + (", hd95_mm in mm" if "hd95_mm" in m else "") + ", the rest in %"
    print_table(f"{checkpoint} on {dataset.name} (n={summary['n']}; {units})", ["metric", "mean", "sd"], rows)
    stdout.print(f"masks: {(dataset.mask_encoding or {}).get('rule', 'synthetic')}", soft_wrap=True)
    stdout.print(f"per-image CSV, overlays and summary in {report_dir}", soft_wrap=True)
    if dataset.skipped:
        stdout.print(f"skipped {len(dataset.skipped)} bad pair(s): {dataset.skipped}")
