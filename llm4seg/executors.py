"""Where the cells of a compare matrix run: here (`local`: this process, or `--parallel N` child
processes), on a Ray cluster (`ray`), or as a SLURM job array through submitit (`slurm`).

Every executor runs the same job, `cell_job`, in a worker process: it appends one line to
`OUT/attempts/CELL.jsonl` (attempt, host, pid, CUDA_VISIBLE_DEVICES, start time) and calls
`compare_cell.run_cell`, which resumes a started cell from its run folder and skips a scored one. So
a retried cell continues where its killed worker stopped, a killed driver continues with the
same command, and every executor's report is the same file. A cell that still fails after its
retries is reported (`failed` in report.json, with its attempts and last error), not lost.

Ray: one task per cell holding `gpus_per_cell` GPUs (1 by default where the cluster has GPUs,
`1 / cells_per_gpu` to share one; Ray sets each task's CUDA_VISIBLE_DEVICES) or `cpus_per_cell`
CPUs; a worker that dies is retried by Ray up to `retries` times. SLURM: one array task per cell,
one GPU each, `--signal` before the time limit and requeue on preemption (submitit's
checkpointing: the requeued task resumes the run). NOT RUN on a real SLURM cluster here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from llm4seg.errors import ConfigError
from llm4seg.paired import cell_name

Cell = tuple  # (variant, split or None, seed)
EXECUTORS = ("local", "ray", "slurm")


@dataclass
class CellFailure:
    """A cell that failed after its retries: its name, how many attempts started, the last error."""

    cell: str
    attempts: int
    error: str


@dataclass
class ExecutorOptions:
    """How cells are placed: the executor and its cluster settings (see the module docstring)."""

    kind: str = "local"
    parallel: int = 1
    retries: int = 2
    ray_address: str | None = None
    gpus_per_cell: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cells_per_gpu: int = 1
    cpus_per_cell: float = 1.0
    slurm_partition: str | None = None
    slurm_account: str | None = None
    slurm_time_min: int = 24 * 60
    slurm_cluster: str | None = None  # None: SLURM where `sbatch` is found; "local"/"debug" run here (tests)
    ray_connect_timeout_s: float = float(os.environ.get("LLM4SEG_RAY_CONNECT_TIMEOUT_S", 60))

    def check(self) -> None:
        """Refuse values that cannot work, naming the option."""
        if self.kind not in EXECUTORS:
            raise ConfigError(f"--executor {self.kind!r} is not known", hint=f"use one of {', '.join(EXECUTORS)}")
        if self.retries < 0 or self.cells_per_gpu < 1 or self.cpus_per_cell <= 0 or self.slurm_time_min < 1:
            raise ConfigError(f"--retries {self.retries}, --cells-per-gpu {self.cells_per_gpu}, --cpus-per-cell "
                              f"{self.cpus_per_cell}, --slurm-time {self.slurm_time_min}: expected retries >= 0, "
                              "cells per GPU >= 1, CPUs per cell > 0, time >= 1 minute",
                              hint="e.g. --retries 2 --cells-per-gpu 2")


def attempts_of(out: Path, cell: Cell) -> list[dict[str, Any]]:
    """The attempts recorded for a cell (one JSON line each), oldest first."""
    path = Path(out) / "attempts" / f"{cell_name(*cell)}.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def cell_job(matrix: dict[str, Any], out: str, cell: Cell) -> dict[str, Any]:
    """Run one cell in this (worker) process: record the attempt, then train or resume and score it.

    Args:
        matrix: the Matrix as a dict (what `compare.json` holds).
        out: the comparison folder, a path every worker sees.
        cell: (variant, split or None, seed).
    """
    from llm4seg.compare_cell import Matrix, run_cell

    folder = Path(out) / "attempts"  # beside the run folders: a run folder holds only the run
    folder.mkdir(parents=True, exist_ok=True)
    record = {"attempt": len(attempts_of(Path(out), cell)) + 1, "host": socket.gethostname(), "pid": os.getpid(),
              "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "start_unix": time.time()}
    with open(folder / f"{cell_name(*cell)}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    return run_cell(Matrix(**matrix), Path(out), tuple(cell))


def check_shared_path(path: str | None, what: str) -> None:
    """Refuse a data or output path that is missing here (the driver): workers read the same one."""
    if path and not Path(path).exists():
        raise ConfigError(f"{what} {path} does not exist on this machine",
                          hint="on a cluster, pass a path every worker sees (a shared file system)")


def run_ray(matrix: dict[str, Any], out: Path, cells: list[Cell], opts: ExecutorOptions) -> Iterator[dict | CellFailure]:
    """Each cell as a Ray task (see the module docstring); results in cell order."""
    from llm4seg._optional import require

    ray = require("ray", "--executor ray")
    if not ray.is_initialized():
        _ray_init(ray, opts)
    gpus = opts.gpus_per_cell
    if gpus is None:
        gpus = 1.0 / opts.cells_per_gpu if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    _check_feasible(ray.cluster_resources(), opts.cpus_per_cell, gpus)
    remote = ray.remote(num_gpus=gpus, num_cpus=opts.cpus_per_cell, max_retries=opts.retries,
                        retry_exceptions=True)(cell_job)
    probe = ray.remote(num_cpus=0)(_path_seen).remote([matrix.get("data"), str(out)])
    missing = ray.get(probe)
    if missing:
        raise ConfigError(f"a Ray worker does not see {', '.join(missing)}",
                          hint="pass --data and --out on a file system every node mounts")
    futures = [remote.remote(matrix, str(out), cell) for cell in cells]
    for cell, future in zip(cells, futures):
        try:
            yield ray.get(future)
        except Exception as exc:  # RayTaskError (its traceback), WorkerCrashedError after the retries
            yield CellFailure(cell_name(*cell), len(attempts_of(out, cell)), _last_line(exc))


def _ray_init(ray: Any, opts: ExecutorOptions) -> None:
    """ray.init within `ray_connect_timeout_s`: Ray itself retries an unreachable address forever."""
    done, errors = threading.Event(), []

    def connect() -> None:
        try:
            ray.init(address=opts.ray_address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        except Exception as exc:  # ConnectionError, RuntimeError: said below with the address
            errors.append(exc)
        done.set()

    threading.Thread(target=connect, name="llm4seg-ray-init", daemon=True).start()
    where = opts.ray_address or "a new local cluster"
    if not done.wait(opts.ray_connect_timeout_s):
        raise ConfigError(f"Ray did not connect to {where} within {opts.ray_connect_timeout_s:g} s",
                          hint="check --ray-address (HOST:6379 or ray://HOST:10001) and that the cluster runs "
                               "(`ray status` on its head node)")
    if errors:
        raise ConfigError(f"Ray could not connect to {where}: {_last_line(errors[0])}",
                          hint="check --ray-address and that the cluster runs (`ray status` on its head node)")


def _check_feasible(resources: dict[str, float], cpus: float, gpus: float) -> None:
    """Refuse a cell no node of the cluster could ever run (Ray would wait for it forever)."""
    have_cpu, have_gpu = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if cpus > have_cpu or gpus > have_gpu:
        raise ConfigError(f"each cell asks for {cpus:g} CPU(s) and {gpus:g} GPU(s); the Ray cluster has {have_cpu:g} "
                          f"CPU(s) and {have_gpu:g} GPU(s) in all: no cell could ever start",
                          hint="lower --cpus-per-cell (or --cells-per-gpu), or add nodes to the cluster")


def _path_seen(paths: list[str | None]) -> list[str]:
    """In a worker: which of `paths` it cannot see."""
    return [p for p in paths if p and not Path(p).exists()]


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class _CellTask:
    """A cell as a submitit callable that SLURM may preempt: `checkpoint` resubmits the same call,
    and the requeued task resumes the run from its folder (training saves its state)."""

    def __init__(self, matrix: dict[str, Any], out: str) -> None:
        self.matrix, self.out = matrix, out

    def __call__(self, cell: Cell) -> dict[str, Any]:
        return cell_job(self.matrix, self.out, cell)

    def checkpoint(self, cell: Cell) -> Any:
        """Called by submitit on preemption or timeout: requeue this cell."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, cell)


def slurm_parameters(opts: ExecutorOptions, n_cells: int) -> dict[str, Any]:
    """submitit's parameters for one GPU per array task (AutoExecutor names)."""
    params: dict[str, Any] = {"name": "llm4seg-compare", "timeout_min": opts.slurm_time_min, "gpus_per_node": 1,
                              "tasks_per_node": 1, "cpus_per_task": max(1, int(opts.cpus_per_cell)),
                              "slurm_array_parallelism": n_cells, "slurm_signal_delay_s": 120}
    if opts.slurm_partition:
        params["slurm_partition"] = opts.slurm_partition
    if opts.slurm_account:
        params["slurm_account"] = opts.slurm_account
    return params


def sbatch_script(opts: ExecutorOptions, n_cells: int, folder: Path) -> str:
    """The sbatch script submitit would submit for this matrix (for a dry run and the tests)."""
    from submitit.slurm import slurm

    p = slurm_parameters(opts, n_cells)
    return slurm._make_sbatch_string(command="python -u -m submitit.core._submit " + str(folder), folder=folder,
                                     job_name=p["name"], partition=p.get("slurm_partition"), time=p["timeout_min"],
                                     account=p.get("slurm_account"), gpus_per_node=1, ntasks_per_node=1,
                                     cpus_per_task=p["cpus_per_task"], signal_delay_s=p["slurm_signal_delay_s"],
                                     array_parallelism=n_cells, map_count=n_cells)


def run_slurm(matrix: dict[str, Any], out: Path, cells: list[Cell], opts: ExecutorOptions) -> Iterator[dict | CellFailure]:
    """The cells as one submitit job array (SLURM where `sbatch` exists, else the cluster named by
    `slurm_cluster`); a failed task is resubmitted up to `retries` times."""
    from llm4seg._optional import require

    submitit = require("submitit", "--executor slurm")
    if opts.slurm_cluster is None and shutil.which("sbatch") is None:  # submitit would run every cell here instead
        raise ConfigError("--executor slurm needs SLURM's `sbatch` on this machine, and there is none on PATH",
                          hint="run compare on a SLURM login node, or use --executor local (or --parallel N) here")
    executor = submitit.AutoExecutor(folder=str(out / "slurm" / "%j"), cluster=opts.slurm_cluster)
    executor.update_parameters(**slurm_parameters(opts, len(cells)))
    task = _CellTask(matrix, str(out))
    jobs = executor.map_array(task, cells)
    for cell, job in zip(cells, jobs):
        for tries in range(opts.retries + 1):
            try:
                yield job.result()
                break
            except Exception as exc:  # submitit.core.utils.FailedJobError / UncompletedJobError
                if tries == opts.retries:
                    yield CellFailure(cell_name(*cell), len(attempts_of(out, cell)), _last_line(exc))
                else:
                    job = executor.submit(task, cell)


def run_cells(matrix: dict[str, Any], out: Path, cells: list[Cell], opts: ExecutorOptions,
              local: Callable[[Cell], dict | None]) -> Iterator[dict | CellFailure | None]:
    """Results of `cells` in order through the chosen executor (`local` runs one cell here)."""
    if opts.kind == "ray":
        yield from run_ray(matrix, out, cells, opts)
    elif opts.kind == "slurm":
        yield from run_slurm(matrix, out, cells, opts)
    else:
        yield from (local(cell) for cell in cells)


__all__ = ["CellFailure", "EXECUTORS", "ExecutorOptions", "attempts_of", "cell_job", "check_shared_path",
           "run_cells", "run_ray", "run_slurm", "sbatch_script", "slurm_parameters"]
