"""`llm4seg compare`: variants x splits x seeds with the same settings, and a paired report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llm4seg.cli.options import DataOpt, DeviceOpt, JsonOpt, LlmOpt
from llm4seg.cli.render import print_json, stderr, stdout


def _list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def compare(
    variants: Annotated[str, typer.Option("--variants", help="Comma-separated model names; the first is the baseline.")] = "cmunext,llm4seg,llm4seg_random",
    data: DataOpt = None,
    splits: Annotated[Optional[str], typer.Option("--splits", help="Comma-separated training splits (trainK pairs with valK); omit for one seeded split.")] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds.")] = "0,1",
    llm: LlmOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Comparison folder (rerun with the same options to continue a killed one).")] = Path("runs/compare"),
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs per run (the paper: 300).")] = 300,
    image_size: Annotated[int, typer.Option("--image-size", help="Training size in pixels.")] = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size (the paper: 8).")] = 8,
    synthetic_count: Annotated[int, typer.Option("--synthetic-count", help="Images of the synthetic set when --data is omitted.")] = 200,
    device: DeviceOpt = "auto",
    step_mode: Annotated[str, typer.Option("--step-mode", help="eager, or graph (each training step as one CUDA graph; GPU).")] = "eager",
    parallel: Annotated[int, typer.Option("--parallel", help="Runs at once, as separate processes (a GPU serves several small runs).")] = 1,
    stop_after: Annotated[Optional[float], typer.Option("--stop-after", help="Minutes: start no run after this (started ones "
                                                        "finish); the report lists the rest as missing; rerun to continue.",
                                                        show_default=False)] = None,
    paper_double_scaling: Annotated[bool, typer.Option("--paper-double-scaling", help="Divide normalised images by 255 "
                                                       "again, as the authors' code does (to check a baseline against "
                                                       "their published figures).")] = False,
    executor: Annotated[str, typer.Option("--executor", help="Where runs go: local (this machine), ray (a Ray "
                                          "cluster; llm4seg[ray]) or slurm (a job array via submitit; llm4seg[slurm]).")] = "local",
    retries: Annotated[int, typer.Option("--retries", help="Runs again a run whose process died (it resumes), at most "
                                         "this often (ray, slurm, --parallel).")] = 2,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="An existing Ray cluster (default: "
                                                       "RAY_ADDRESS, else a local one).")] = None,
    cells_per_gpu: Annotated[int, typer.Option("--cells-per-gpu", help="Runs sharing one GPU (ray; small models "
                                               "leave an H200 mostly idle).")] = 1,
    cpus_per_cell: Annotated[float, typer.Option("--cpus-per-cell", help="CPUs each run holds (ray, slurm).")] = 1.0,
    slurm_partition: Annotated[Optional[str], typer.Option("--slurm-partition")] = None,
    slurm_account: Annotated[Optional[str], typer.Option("--slurm-account")] = None,
    slurm_time: Annotated[int, typer.Option("--slurm-time", help="Minutes per array task (a run that reaches it is "
                                            "requeued and resumes).")] = 24 * 60,
    json_out: JsonOpt = False,
) -> None:
    """Train and score every variant on every split and seed with the paper's settings; write
    report.md/.json (per-run metrics, mean and sd per variant, paired deltas against the
    baseline with 95 % intervals), per_image.csv and compare.png.

    \b
    Example (BUSI, the paper's protocol; continue a killed matrix by running it again):
      llm4seg compare --data DATA --splits train1,train2,train3 --seeds 0,1 \\
        --variants cmunext,llm4seg,llm4seg_random --out runs/busi-compare
    In time slots (a shared GPU): add --stop-after 7 and rerun until no run is missing.
    On a cluster, the same command with --executor ray (--ray-address HOST:6379) or --executor slurm
    (--slurm-partition gpu --slurm-account ACC); --data and --out on a file system every node sees.
    The authors' code divides normalised images by 255 a second time; --paper-double-scaling
    does too, for a baseline checked against their figures (CMUNeXt on BUSI: 71.56 IoU).
    """
    from llm4seg.compare import Matrix, check_run_options, run_matrix, seeds_from_text
    from llm4seg.executors import ExecutorOptions

    seed_list = seeds_from_text(seeds)
    check_run_options(parallel, stop_after)
    matrix = Matrix(variants=_list(variants), splits=_list(splits) or [None], seeds=seed_list, data=data, llm=llm,
                    train=dict(epochs=epochs, image_size=image_size, batch_size=batch_size,
                               synthetic_count=synthetic_count, device=device, step_mode=step_mode,
                               paper_double_scaling=paper_double_scaling))
    placement = ExecutorOptions(kind=executor, parallel=parallel, retries=retries, ray_address=ray_address,
                                cells_per_gpu=cells_per_gpu, cpus_per_cell=cpus_per_cell, slurm_partition=slurm_partition,
                                slurm_account=slurm_account, slurm_time_min=slurm_time)
    report = run_matrix(matrix, out, parallel, None if json_out else _progress(len(matrix.cells())),
                        stop_after_s=None if stop_after is None else 60 * stop_after,
                        on_epoch=lambda line: stderr.print(line, markup=False, soft_wrap=True), executor=placement)
    if json_out:
        print_json(report)
    else:
        _render(report, out, len(matrix.cells()))


def _progress(total: int):
    """A callback printing one line per finished run on stderr."""
    from llm4seg.compare import cell_name

    done = {"n": 0}

    def on_cell(result: dict) -> None:
        done["n"] += 1
        stderr.print(f"[{done['n']}/{total}] {cell_name(result['variant'], result['split'], result['seed'])}: "
                     f"val IoU {100 * result['metrics']['iou']:.2f}, Dice {100 * result['metrics']['dice']:.2f}",
                     markup=False, soft_wrap=True)

    return on_cell


def _render(report: dict, out: Path, total: int) -> None:
    stdout.print((out / "report.md").read_text(), markup=False, soft_wrap=True, highlight=False)
    stdout.print(f"wrote {', '.join(report['files'])}", soft_wrap=True, markup=False)
    if report["missing"]:
        stdout.print(f"{len(report['missing'])} of {total} runs not run yet; "
                     "run the same command again to continue", soft_wrap=True, markup=False)
    for failed in report.get("failed", []):
        stdout.print(f"failed: {failed['cell']} after {failed['attempts']} attempt(s): {failed['error']} "
                     f"(log: {out}/runs/{failed['cell']}/train.log); rerun to try again", soft_wrap=True, markup=False)
